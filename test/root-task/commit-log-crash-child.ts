// Crash-campaign child for commit-log.test.ts: opens the log, then appends
// records from several concurrent loops (so batches hold many frames) and
// prints `ack <seq>` only after append() resolved. The parent SIGKILLs it.
// It waits for a line on stdin before opening, so the parent can start it
// ahead of time and keep Node's start-up out of the campaign's time.
// Usage: node child.mjs DIR KEY_HEX INFLIGHT
import { once } from "node:events";
import { CommitLog } from "../../root-task/commit-log.ts";

const [dir, keyHex, inflightText] = process.argv.slice(2);
if (!dir || !keyHex) {
  process.stderr.write("usage: child DIR KEY_HEX [INFLIGHT]\n");
  process.exit(2);
}
process.stdout.write("loaded\n");
await once(process.stdin, "data");
const log = await CommitLog.open(dir, { key: Buffer.from(keyHex, "hex") });
process.stdout.write(`ready ${log.lastSeq}\n`);
let n = 0;
async function loop(): Promise<never> {
  for (;;) {
    const i = n++;
    const r = await log.append("ctr", { pid: process.pid, i, pad: "x".repeat(i % 200) });
    process.stdout.write(`ack ${r.seq}\n`);
  }
}
await Promise.all(Array.from({ length: Number(inflightText ?? 8) }, loop));
