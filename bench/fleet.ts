/**
 * Benchmark of the fleet link against a real mosquitto on 127.0.0.1: how
 * fast records get from `link.publish()` (durable in the outbox) to a
 * QoS 1 subscriber, next to `mosquitto_pub -q 1 -l` feeding the same number
 * of lines of the same size to `mosquitto_sub -q 1` (the reference, which
 * keeps nothing on disk); and how fast a backlog made during an outage
 * drains after the broker comes back.
 *
 * Options: `--records N` (default 5000), `--window W` (default 32).
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

/** Runs the benchmark and prints its figures; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const opt = (name: string, def: number): number => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : def;
  };
  if (argv.includes("--help")) {
    process.stdout.write("npm run bench -- fleet [--records N] [--window W]\n");
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
    await link.close();
    await outbox.close();

    const rate = (ms: number): string => `${Math.round((records / ms) * 1000).toLocaleString("en-US")}/s`;
    process.stdout.write(
      [
        `fleet: ${records} records of ~${line.length} bytes, QoS 1, mosquitto on 127.0.0.1, window ${window}`,
        `  mosquitto_pub -l → mosquitto_sub   ${rate(refMs)} (${refMs.toFixed(0)} ms)`,
        `  link.publish → subscriber (live)  ${rate(liveMs)} (${liveMs.toFixed(0)} ms; appends durable after ${appendedMs.toFixed(0)} ms) = ${(refMs / liveMs).toFixed(2)}x the reference`,
        `  backlog drain after an outage      ${rate(drainMs)} (${drainMs.toFixed(0)} ms for ${(backlogBytes / 1024).toFixed(0)} KiB of outbox, from the broker's restart, reconnects included)`,
        "",
      ].join("\n"),
    );
    return 0;
  } finally {
    await broker.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** mosquitto_sub that exits after `count` messages; resolves after giving it time to subscribe. */
async function subscriber(port: number, topic: string, count: number, session?: string): Promise<{ done: Promise<void> }> {
  const persistent = session === undefined ? [] : ["-c", "-i", session];
  const proc = spawn("mosquitto_sub", ["-h", "127.0.0.1", "-p", String(port), "-q", "1", ...persistent, "-t", topic, "-C", String(count)], { stdio: ["ignore", "ignore", "ignore"] });
  const done = new Promise<void>((resolve, reject) => proc.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_sub exited ${code}`)))));
  // mosquitto_sub has no "subscribed" signal; give it time to connect and subscribe.
  await new Promise((r) => setTimeout(r, 500));
  return { done };
}
