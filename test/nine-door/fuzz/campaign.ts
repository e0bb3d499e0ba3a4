/**
 * A longer fuzz campaign against the appliance:
 *
 *     npm run fuzz -- --frames 1000000 [--seed 7] [--connections 8]
 *
 * Prints frames per second, replies by error class, frames by kind and the
 * final memory; exits 1 if the server missed an answer, hung, or stopped
 * serving the control session.
 * @module
 */
import { parseArgs } from "node:util";
import { controlSession, fuzzServer } from "./driver.ts";
import { startAppliance } from "./target.ts";

const { values } = parseArgs({
  options: {
    frames: { type: "string", default: "1000000" },
    seed: { type: "string", default: String(Date.now() % 0x7fffffff) },
    connections: { type: "string", default: "8" },
  },
});
const frames = Number(values.frames);
const seed = Number(values.seed);
const connections = Number(values.connections);
if (!Number.isInteger(frames) || frames <= 0 || !Number.isInteger(seed) || !Number.isInteger(connections) || connections <= 0) {
  console.error("usage: npm run fuzz -- --frames N [--seed S] [--connections C]");
  process.exit(2);
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
const target = await startAppliance();
const before = process.memoryUsage();
console.log(`fuzzing the appliance on 127.0.0.1:${target.port}: ${frames} frames, seed ${seed}, ${connections} connections`);

const stop = new AbortController();
const control = controlSession({ port: target.port, aname: target.ticket, path: ["proc", "boot"], stop: stop.signal });
const t0 = performance.now();
const progress = setInterval(() => {
  const m = process.memoryUsage();
  console.log(`  ... ${((performance.now() - t0) / 1000).toFixed(0)} s, rss ${mib(m.rss)}, heap ${mib(m.heapUsed)}, sessions ${target.app.server.sessions.length}`);
}, 5000);
const stats = await fuzzServer({ port: target.port, aname: target.ticket, frames, seed, connections });
const seconds = (performance.now() - t0) / 1000;
clearInterval(progress);
stop.abort();
const ctl = await control;
const after = process.memoryUsage();
await target.close();

const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}=${n}`).join(" ");
console.log(`frames:      ${stats.frames} in ${seconds.toFixed(1)} s = ${Math.round(stats.frames / seconds)} frames/s`);
console.log(`connections: ${stats.connections} (${stats.refusedHangups} hung up by the server after a refused size field)`);
console.log(`replies:     ${stats.replies}: ${sorted(stats.replyClasses)}`);
console.log(`frame kinds: ${sorted(stats.kinds)}`);
console.log(`control:     ${ctl.rounds} round trips, slowest ${ctl.maxLatencyMs.toFixed(1)} ms`);
console.log(`memory:      rss ${mib(before.rss)} -> ${mib(after.rss)}, heap ${mib(before.heapUsed)} -> ${mib(after.heapUsed)}`);
const failures = [...stats.failures, ...ctl.failures.map((f) => `control: ${f}`)];
for (const f of failures) console.log(`FAIL ${f}`);
console.log(failures.length === 0 ? "no crash, no hang, every owed reply arrived" : `${failures.length} failures`);
process.exit(failures.length === 0 ? 0 : 1);
