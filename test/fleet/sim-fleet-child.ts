// Simulated appliances in their own process, for the scale suite and the
// benchmark: `node child.mjs DIR URL PUBFILE HZ ID...` starts a SimFleet,
// prints `online N` whenever the number of online links changes, and on
// SIGTERM stops making telemetry, waits for every outbox to drain, prints
// `made {"<id>":<last seq>,…}` and `ran {"<id>":<commands>,…}`, and exits 0.
// A line `burst N` on stdin makes every appliance publish N records as fast
// as it can, then prints `burst-done`.
import { createInterface } from "node:readline";
import { readPublicKey } from "../../root-task/index.ts";
import { SimFleet } from "./sim-fleet.ts";

const [dir, url, pubFile, hzText, ...ids] = process.argv.slice(2);
if (!dir || !url || !pubFile || ids.length === 0) {
  process.stderr.write("usage: child DIR URL PUBFILE HZ ID...\n");
  process.exit(2);
}
const sim = await SimFleet.start({ url, dir, ids, queenPub: await readPublicKey(pubFile), hz: Number(hzText) });
let shown = -1;
const watch = setInterval(() => {
  const n = sim.online;
  if (n !== shown) process.stdout.write(`online ${(shown = n)}\n`);
}, 100);
createInterface({ input: process.stdin }).on("line", (line) => {
  const m = /^burst (\d+)$/.exec(line);
  if (m) void sim.burst(Number(m[1])).then(() => process.stdout.write("burst-done\n"));
});
process.once("SIGTERM", () => {
  void (async () => {
    const drained = await sim.drain();
    clearInterval(watch);
    const made = Object.fromEntries([...sim.appliances.values()].map((a) => [a.id, a.outbox.lastSeq]));
    const ran = Object.fromEntries([...sim.appliances.values()].map((a) => [a.id, a.ran.length]));
    process.stdout.write(`drained ${drained}\nmade ${JSON.stringify(made)}\nran ${JSON.stringify(ran)}\n`);
    await sim.stop();
    process.exit(0);
  })();
});
