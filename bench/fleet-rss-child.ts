/**
 * What the fleet link adds to an appliance process, for `npm run bench --
 * fleet`: run with `node --expose-gc`, it measures its resident set with
 * nothing started, then opens an outbox, starts a link to URL and
 * publishes telemetry at HZ for SECONDS, and prints one JSON line with the
 * resident set before and after (each after a full GC) and the CPU time
 * used while the link ran. Usage: `child URL DIR HZ SECONDS`.
 * @module
 */
import { readFileSync } from "node:fs";

const [url, dir, hzText, secondsText] = process.argv.slice(2);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

function rssBytes(): number {
  for (let i = 0; i < 3; i++) gc();
  const m = readFileSync("/proc/self/status", "utf8").match(/^VmRSS:\s+(\d+) kB/m);
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

await new Promise((r) => setTimeout(r, 300));
const before = rssBytes();
const { FleetLink, Outbox } = await import("../fleet/index.ts");
const outbox = await Outbox.open(dir!);
const link = new FleetLink({ url: url!, id: "rss-1", outbox, birth: () => ({ version: "bench", boot: { board: "bench" }, lifecycle: "ONLINE" }) });
link.start();
while (link.state !== "online") await new Promise((r) => setTimeout(r, 10));
const hz = Number(hzText);
const seconds = Number(secondsText);
const cpu0 = process.cpuUsage();
const t0 = performance.now();
let tick = 0;
while (performance.now() - t0 < seconds * 1000) {
  await link.publish({ kind: "telemetry", worker: "worker-1", data: { tick: tick++, load: 0.42, rss: 45_600_000 } });
  const next = t0 + (tick * 1000) / hz;
  await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
}
const cpu = process.cpuUsage(cpu0);
const wallMs = performance.now() - t0;
const after = rssBytes();
await link.close();
await outbox.close();
process.stdout.write(`${JSON.stringify({ before, after, cpuMs: (cpu.user + cpu.system) / 1000, wallMs, records: tick })}\n`);
process.exit(0);
