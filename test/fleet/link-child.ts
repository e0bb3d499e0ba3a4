// A fleet link in its own process, for link.test.ts's kill -9 case: opens
// the outbox in DIR, starts the link to URL, and publishes one telemetry
// record every PERIOD ms, printing `made <seq>` once its append resolved.
// Usage: node child.mjs DIR URL PERIOD_MS
import { FleetLink, Outbox } from "../../fleet/index.ts";

const [dir, url, periodText] = process.argv.slice(2);
if (!dir || !url) {
  process.stderr.write("usage: child DIR URL [PERIOD_MS]\n");
  process.exit(2);
}
const outbox = await Outbox.open(dir, { onAudit: (l) => process.stdout.write(`audit ${l}\n`) });
const link = new FleetLink({
  url,
  id: "app-1",
  outbox,
  birth: () => ({ version: "0.1.0", boot: { board: "host" }, lifecycle: "ONLINE" }),
  minBackoffMs: 100,
  maxBackoffMs: 500,
  onState: (_from, to, why) => process.stdout.write(`state ${to} ${why}\n`),
});
link.start();
process.stdout.write(`ready ${outbox.lastSeq}\n`);
let tick = 0;
for (;;) {
  const seq = await link.publish({ kind: "telemetry", worker: "worker-1", data: { tick: tick++, pid: process.pid } });
  process.stdout.write(`made ${seq}\n`);
  await new Promise((r) => setTimeout(r, Number(periodText ?? 20)));
}
