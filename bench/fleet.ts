/**
 * Benchmark of the fleet link against a real mosquitto on 127.0.0.1: how
 * fast records get from `link.publish()` (durable in the outbox) to a
 * QoS 1 subscriber, next to `mosquitto_pub -q 1 -l` feeding the same number
 * of lines of the same size to `mosquitto_sub -q 1` (the reference, which
 * keeps nothing on disk); and how fast a backlog made during an outage
 * drains after the broker comes back. Then, on the same broker
 * (bench/fleet-more.ts): publish → subscriber latency p50/p99 of the link
 * next to `mosquitto_pub` → the same subscriber (the floor); records/s from
 * 200 appliances; the time of one signed fan-out to 200 appliances until
 * every reply is in; the resident set and CPU a link adds to a process,
 * and to the appliance (`cohesix serve` without and with `--fleet`).
 *
 * Options: `--records N` (default 5000), `--window W` (default 32),
 * `--latency-count N` (default 1000, at `--latency-hz`, default 100),
 * `--appliances N` (default 200), `--burst N` records each (default 50),
 * `--rss-seconds S` (default 10, telemetry at 1 Hz).
 *
 * @example
 * ```sh
 * npm run bench -- fleet --records 5000
 * ```
 * @module
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FleetLink, Outbox } from "../fleet/index.ts";
import { Broker } from "../test/fleet/broker.ts";
import { load } from "./child.ts";
import { applianceCost, fleetOf, latency, linkCost } from "./fleet-more.ts";

/** Runs the benchmark and prints its figures; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const opt = (name: string, def: number): number => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : def;
  };
  if (argv.includes("--help")) {
    process.stdout.write("npm run bench -- fleet [--records N] [--window W] [--latency-count N] [--latency-hz HZ] [--appliances N] [--burst N] [--rss-seconds S]\n");
    return 0;
  }
  const records = opt("records", 5000);
  const window = opt("window", 32);
  const dir = await mkdtemp(join(tmpdir(), "cohesix-bench-fleet-"));
  await mkdir(join(dir, "broker"));
  const broker = await Broker.start(join(dir, "broker"));
  try {
    const data = { tick: 0, load: 0.42, rss: 45_600_000, note: "x".repeat(40) };
    const line = JSON.stringify({ v: 1, kind: "telemetry", id: "bench-1", seq: 1, ts_ms: Date.now(), historical: false, worker: "worker-1", data });

    // Reference: mosquitto_pub -l → mosquitto_sub, QoS 1.
    const refSub = await subscriber(broker.port, "bench/ref", records);
    const t0 = performance.now();
    const pub = spawn("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(broker.port), "-q", "1", "-t", "bench/ref", "-l"], { stdio: ["pipe", "ignore", "inherit"] });
    pub.stdin.end(`${line}\n`.repeat(records));
    await refSub.done;
    const refMs = performance.now() - t0;

    // The link: publish() → outbox (fsync) → QoS 1 → subscriber.
    const outbox = await Outbox.open(join(dir, "outbox"));
    const link = new FleetLink({ url: broker.url, id: "bench-1", outbox, window, birth: () => ({ version: "bench", boot: {}, lifecycle: "ONLINE" }), minBackoffMs: 50, maxBackoffMs: 200 });
    link.start();
    while (link.state !== "online") await new Promise((r) => setTimeout(r, 10));
    const liveSub = await subscriber(broker.port, "cohesix/bench-1/telemetry/#", records);
    const t1 = performance.now();
    const pending: Promise<number>[] = [];
    for (let i = 0; i < records; i++) {
      pending.push(link.publish({ kind: "telemetry", worker: "worker-1", data: { ...data, tick: i } }));
      if (pending.length >= 256) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    const appendedMs = performance.now() - t1;
    await liveSub.done;
    const liveMs = performance.now() - t1;

    // Outage: the broker stops, records wait in the outbox, the broker comes back.
    // The subscriber's session is persistent (mosquitto_sub -c), so it survives the restart.
    const drainSub = await subscriber(broker.port, "cohesix/bench-1/telemetry/#", records, "bench-drain");
    await broker.stop();
    while (link.state === "online") await new Promise((r) => setTimeout(r, 10));
    for (let i = 0; i < records; i += 256) {
      await Promise.all(Array.from({ length: Math.min(256, records - i) }, (_, k) => link.publish({ kind: "telemetry", worker: "worker-1", data: { ...data, tick: i + k } })));
    }
    const backlogBytes = outbox.stats.bytes;
    const t2 = performance.now();
    await broker.restart();
    while (link.state !== "online") await new Promise((r) => setTimeout(r, 5));
    await drainSub.done;
    const drainMs = performance.now() - t2;
    const replayMs = drainSub.last() - drainSub.first();
    await link.close();
    await outbox.close();

    const rate = (ms: number): string => `${Math.round((records / ms) * 1000).toLocaleString("en-US")}/s`;
    process.stdout.write(
      [
        `fleet: ${records} records of ~${line.length} bytes, QoS 1, mosquitto on 127.0.0.1, window ${window}; load ${load()}`,
        `  mosquitto_pub -l → mosquitto_sub   ${rate(refMs)} (${refMs.toFixed(0)} ms)`,
        `  link.publish → subscriber (live)  ${rate(liveMs)} (${liveMs.toFixed(0)} ms; appends durable after ${appendedMs.toFixed(0)} ms) = ${(refMs / liveMs).toFixed(2)}x the reference`,
        `  backlog drain after an outage      ${rate(drainMs)} (${drainMs.toFixed(0)} ms for ${(backlogBytes / 1024).toFixed(0)} KiB of outbox, from the broker's restart, reconnects included)`,
        `  outbox replay, first to last       ${rate(replayMs)} (${replayMs.toFixed(0)} ms from the first replayed record to the last at the subscriber)  [target ≥ 5,000/s]`,
        "",
      ].join("\n"),
    );

    const lat = await latency(broker.url, broker.port, dir, { count: opt("latency-count", 1000), hz: opt("latency-hz", 100) });
    const ms = (x: number): string => `${x.toFixed(2)} ms`;
    process.stdout.write(
      [
        `latency, publish → QoS 1 subscriber, ${lat.link.n} messages at ${opt("latency-hz", 100)}/s; load ${load()}`,
        `  mosquitto_pub -l (floor)   p50 ${ms(lat.floor.p50)}  p99 ${ms(lat.floor.p99)}`,
        `  link.publish (fsync first) p50 ${ms(lat.link.p50)}  p99 ${ms(lat.link.p99)} = ${(lat.link.p99 / lat.floor.p99).toFixed(2)}x the floor at p99  [target ≤ 2x]`,
        `  write + fdatasync alone    p50 ${ms(lat.fsync.p50)}  p99 ${ms(lat.fsync.p99)} (same disk, same pace: what durability costs before a record may leave)`,
        "",
      ].join("\n"),
    );

    const appliances = opt("appliances", 200);
    const many = await fleetOf(broker.url, join(dir, "fleet"), { appliances, perAppliance: opt("burst", 50) });
    process.stdout.write(
      [
        `${appliances} appliances (fleet links in 2 processes, own outbox each); load ${load()}`,
        `  records/s, all publishing at once  ${Math.round(many.recordsPerS).toLocaleString("en-US")}/s (${many.records.toLocaleString("en-US")} records)`,
        `  fan-out of one signed command      ${(many.fanOutMs / 1000).toFixed(2)} s until ${many.ok}/${appliances} replies ok  [target ≤ 2 s]`,
        "",
      ].join("\n"),
    );

    const cost = await linkCost(broker.url, join(dir, "rss-outbox"), { hz: 1, seconds: opt("rss-seconds", 10) });
    const mib = (b: number): string => `${(b / 1024 / 1024).toFixed(1)} MiB`;
    process.stdout.write(
      [
        `what a link adds to a process (telemetry at 1 Hz for ${opt("rss-seconds", 10)} s, after a full GC); load ${load()}`,
        `  resident set  ${mib(cost.before)} → ${mib(cost.after)}: +${mib(cost.addedBytes)}  [target ≤ 15 MB]`,
        `  CPU           ${cost.cpuPercent.toFixed(2)}% of one core (${cost.records} records)`,
        "",
      ].join("\n"),
    );

    const app = await applianceCost(broker.url, join(dir, "serve"), { seconds: opt("rss-seconds", 10) });
    process.stdout.write(
      [
        `the appliance (cohesix serve --board host, no worker running) without and with --fleet, after ${opt("rss-seconds", 10)} s; load ${load()}`,
        `  resident set  ${mib(app.plain.rss)} → ${mib(app.fleet.rss)}: +${mib(app.fleet.rss - app.plain.rss)}  [target ≤ 15 MB]`,
        `  CPU           ${app.plain.cpuPercent.toFixed(2)}% → ${app.fleet.cpuPercent.toFixed(2)}% of one core`,
        "",
      ].join("\n"),
    );
    return 0;
  } finally {
    await broker.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** mosquitto_sub that exits after `count` messages (times of the first and last kept); resolves after giving it time to subscribe. */
async function subscriber(port: number, topic: string, count: number, session?: string): Promise<{ done: Promise<void>; first: () => number; last: () => number }> {
  const persistent = session === undefined ? [] : ["-c", "-i", session];
  const proc = spawn("mosquitto_sub", ["-h", "127.0.0.1", "-p", String(port), "-q", "1", ...persistent, "-t", topic, "-C", String(count)], { stdio: ["ignore", "pipe", "ignore"] });
  let first = 0;
  let last = 0;
  proc.stdout!.on("data", () => {
    last = performance.now();
    if (first === 0) first = last;
  });
  const done = new Promise<void>((resolve, reject) => proc.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_sub exited ${code}`)))));
  // mosquitto_sub has no "subscribed" signal; give it time to connect and subscribe.
  await new Promise((r) => setTimeout(r, 500));
  return { done, first: () => first, last: () => last };
}
