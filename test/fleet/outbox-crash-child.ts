// Crash-campaign child for outbox.test.ts: opens the outbox, then appends
// from several concurrent loops and prints `ack <seq> <pid>:<i>` only after
// append() resolved. The parent SIGKILLs it at random moments. It waits for
// a line on stdin before opening, so Node's start-up stays out of the timing.
// Usage: node child.mjs DIR INFLIGHT
import { once } from "node:events";
import { Outbox } from "../../fleet/index.ts";

const [dir, inflightText] = process.argv.slice(2);
if (!dir) {
  process.stderr.write("usage: child DIR [INFLIGHT]\n");
  process.exit(2);
}
process.stdout.write("loaded\n");
await once(process.stdin, "data");
const box = await Outbox.open(dir, { maxBytes: 256 << 20, onAudit: (l) => process.stdout.write(`audit ${l}\n`) });
process.stdout.write(`ready ${box.lastSeq}\n`);
let n = 0;
async function loop(): Promise<never> {
  for (;;) {
    const i = n++;
    const tag = `${process.pid}:${i}`;
    const e = await box.append(Buffer.from(JSON.stringify({ tag, pad: "x".repeat(i % 300) })));
    process.stdout.write(`ack ${e.seq} ${tag}\n`);
  }
}
await Promise.all(Array.from({ length: Number(inflightText ?? 8) }, loop));
