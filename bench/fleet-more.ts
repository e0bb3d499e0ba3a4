/**
 * The fleet benchmark's other figures (bench/fleet.ts runs them on the same
 * broker): publish → subscriber latency of the link next to
 * `mosquitto_pub` → the same subscriber (the floor); records/s from 200
 * appliances; fan-out of one signed command to 200 appliances; and the
 * resident set and CPU the link adds to an appliance process.
 * @module
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, open, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import mqtt from "mqtt";
import { FleetHost, FleetLink, FleetView, Outbox, decodeRecord, fanOut } from "../fleet/index.ts";
import { signFleetCommand, writeKeyPair } from "../root-task/index.ts";
import { cpuSeconds, percentile } from "./child.ts";

const now = (): number => performance.timeOrigin + performance.now();

/** A QoS 1 MQTT.js subscriber in this process. */
async function listen(url: string, filter: string, onMessage: (topic: string, payload: Buffer) => void): Promise<() => Promise<void>> {
  const client = mqtt.connect(url, { clientId: `bench-${process.pid}-${Math.random().toString(16).slice(2)}`, protocolVersion: 4, reconnectPeriod: 0 });
  client.on("message", onMessage);
  await new Promise<void>((ok, fail) => client.once("connect", () => client.subscribe(filter, { qos: 1 }, (err) => (err ? fail(err) : ok()))));
  return () => new Promise<void>((r) => client.end(true, {}, () => r()));
}

/** p50 and p99 of latencies in ms. */
export interface Latency {
  readonly p50: number;
  readonly p99: number;
  readonly n: number;
}

function summary(samples: number[]): Latency {
  const sorted = samples.sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), n: sorted.length };
}

/**
 * Latency from the call to the subscriber's receipt, `count` messages at
 * `hz`: `mosquitto_pub -q 1 -l` fed a line at a time (the floor), then
 * `link.publish()` (durable in the outbox first). The same MQTT.js
 * subscriber receives both.
 */
export async function latency(url: string, port: number, dir: string, options: { count: number; hz: number }): Promise<{ floor: Latency; link: Latency; fsync: Latency }> {
  const warm = Math.min(20, Math.floor(options.count / 10));
  const floorSamples: number[] = [];
  let stop = await listen(url, "bench/latency", (_t, payload) => {
    const { t, i } = JSON.parse(payload.toString("utf8")) as { t: number; i: number };
    if (i >= warm) floorSamples.push(now() - t);
  });
  const pub = spawn("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(port), "-q", "1", "-t", "bench/latency", "-l"], { stdio: ["pipe", "ignore", "inherit"] });
  await new Promise((r) => setTimeout(r, 300));
  const pad = "x".repeat(120);
  const t0 = performance.now();
  for (let i = 0; i < options.count; i++) {
    pub.stdin.write(`${JSON.stringify({ t: now(), i, pad })}\n`);
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + ((i + 1) * 1000) / options.hz - performance.now())));
  }
  const deadline = Date.now() + 10_000;
  while (floorSamples.length < options.count - warm && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  pub.stdin.end();
  await stop();

  const linkSamples: number[] = [];
  const outbox = await Outbox.open(join(dir, "latency-outbox"));
  const link = new FleetLink({ url, id: "lat-1", outbox, birth: () => ({ version: "bench", boot: {}, lifecycle: "ONLINE" }) });
  link.start();
  while (link.state !== "online") await new Promise((r) => setTimeout(r, 10));
  stop = await listen(url, "cohesix/lat-1/telemetry/#", (_t, payload) => {
    const r = decodeRecord(payload);
    if (r.kind !== "telemetry") return;
    const { t, i } = r.data as { t: number; i: number };
    if (i >= warm) linkSamples.push(now() - t);
  });
  const t1 = performance.now();
  for (let i = 0; i < options.count; i++) {
    void link.publish({ kind: "telemetry", worker: "worker-1", data: { t: now(), i, pad } });
    await new Promise((r) => setTimeout(r, Math.max(0, t1 + ((i + 1) * 1000) / options.hz - performance.now())));
  }
  const deadline2 = Date.now() + 10_000;
  while (linkSamples.length < options.count - warm && Date.now() < deadline2) await new Promise((r) => setTimeout(r, 20));
  await stop();
  await link.close();
  await outbox.close();

  // What the outbox's durability costs alone: one ~200-byte write + fdatasync on the same disk, same pace.
  const fsyncSamples: number[] = [];
  const fh = await open(join(dir, "fsync-probe"), "a");
  const t2 = performance.now();
  for (let i = 0; i < options.count; i++) {
    const s0 = performance.now();
    await fh.write(Buffer.alloc(200, 120));
    await fh.datasync();
    if (i >= warm) fsyncSamples.push(performance.now() - s0);
    await new Promise((r) => setTimeout(r, Math.max(0, t2 + ((i + 1) * 1000) / options.hz - performance.now())));
  }
  await fh.close();
  return { floor: summary(floorSamples), link: summary(linkSamples), fsync: summary(fsyncSamples) };
}

interface SimChild {
  readonly lines: string[];
  online: number;
  send(line: string): void;
  stop(): Promise<void>;
}

function startSims(url: string, dir: string, pubFile: string, ids: readonly string[]): SimChild {
  const proc = spawn(process.execPath, ["scripts/run-ts.mjs", "test/fleet/sim-fleet-child.ts", dir, url, pubFile, "0", ...ids], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const c: SimChild = {
    lines: [],
    online: 0,
    send: (line) => proc.stdin!.write(`${line}\n`),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      await exited;
    },
  };
  createInterface({ input: proc.stdout! }).on("line", (line) => {
    c.lines.push(line);
    const m = /^online (\d+)$/.exec(line);
    if (m) c.online = Number(m[1]);
  });
  return c;
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`bench fleet: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * 200 appliances (fleet links in two child processes): records/s when each
 * publishes `perAppliance` records at once, and the time of one signed
 * fan-out to all of them until every reply is in.
 */
export async function fleetOf(url: string, dir: string, options: { appliances: number; perAppliance: number }): Promise<{ recordsPerS: number; records: number; fanOutMs: number; ok: number }> {
  await mkdir(dir, { recursive: true });
  const keys = await writeKeyPair(dir, { name: "queen" });
  const ids = Array.from({ length: options.appliances }, (_, i) => `b-${String(i).padStart(3, "0")}`);
  const half = Math.ceil(ids.length / 2);
  const sims = [startSims(url, join(dir, "a"), keys.publicPath, ids.slice(0, half)), startSims(url, join(dir, "b"), keys.publicPath, ids.slice(half))];
  try {
    await until(`${ids.length} appliances online`, () => sims.reduce((n, s) => n + s.online, 0) === ids.length, 120_000);
    const total = ids.length * options.perAppliance;
    let got = 0;
    let last = 0;
    const stop = await listen(url, "cohesix/+/telemetry/#", () => {
      got += 1;
      last = performance.now();
    });
    const t0 = performance.now();
    for (const s of sims) s.send(`burst ${options.perAppliance}`);
    await until("every burst record", () => got >= total, 120_000);
    const recordsPerS = (total / (last - t0)) * 1000;
    await stop();

    const host = await FleetHost.connect(url);
    const view = new FleetView();
    host.onMessage((topic, payload) => view.add(topic, payload));
    await host.subscribe(["cohesix/+/birth"]);
    const mine = () => view.list().filter((a) => a.live && ids.includes(a.id));
    await until("every birth", () => mine().length >= ids.length, 10_000);
    const targets = mine().map((a) => ({ id: a.id, ctr: a.ctr }));
    const privateKey = keys.privateKey;
    const t1 = performance.now();
    const results = await fanOut(host, targets, { prefix: "cohesix", command: '{"spawn":"heartbeat"}', sign: (c, a) => signFleetCommand(c, privateKey, a), deadlineMs: 30_000 });
    const fanOutMs = performance.now() - t1;
    await host.close();
    return { recordsPerS, records: total, fanOutMs, ok: results.filter((r) => r.status === "ok").length };
  } finally {
    await Promise.all(sims.map((s) => s.stop()));
  }
}

/**
 * Resident set and CPU a link adds to a process: bench/fleet-rss-child.ts,
 * bundled first and run by a plain `node --expose-gc` (no bundler loaded in
 * the measured process).
 */
export async function linkCost(url: string, dir: string, options: { hz: number; seconds: number }): Promise<{ addedBytes: number; before: number; after: number; cpuPercent: number; records: number }> {
  const { build } = await import("esbuild");
  const cache = resolve("node_modules", ".cache");
  await mkdir(cache, { recursive: true });
  const at = await mkdtemp(join(cache, "fleet-rss-"));
  try {
    const entry = join(at, "child.mjs");
    await build({ entryPoints: [resolve("bench/fleet-rss-child.ts")], outfile: entry, bundle: true, platform: "node", target: "node20", format: "esm", packages: "external", logLevel: "warning" });
    const proc = spawn(process.execPath, ["--expose-gc", entry, url, dir, String(options.hz), String(options.seconds)], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    await new Promise((r) => proc.once("exit", r));
    const r = JSON.parse(out.trim().split("\n").at(-1)!) as { before: number; after: number; cpuMs: number; wallMs: number; records: number };
    return { addedBytes: r.after - r.before, before: r.before, after: r.after, cpuPercent: (r.cpuMs / r.wallMs) * 100, records: r.records };
  } finally {
    await rm(at, { recursive: true, force: true });
  }
}

/** Resident set (VmRSS) and CPU of one `cohesix serve` process over `seconds`, with or without `--fleet`. */
async function serveCost(dir: string, pubFile: string, fleet: readonly string[], seconds: number): Promise<{ rss: number; cpuPercent: number }> {
  const proc = spawn(process.execPath, ["bin/cohesix.js", "serve", "--board", "host", "--listen", "127.0.0.1:0", "--state", dir, "--queen-pub", pubFile, ...fleet], { stdio: ["ignore", "pipe", "ignore"] });
  try {
    await new Promise<void>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error("bench fleet: cohesix serve printed no READY within 30 s")), 30_000);
      createInterface({ input: proc.stdout! }).on("line", (l) => {
        if (l.startsWith("READY ")) {
          clearTimeout(timer);
          ok();
        }
      });
    });
    await new Promise((r) => setTimeout(r, 2000)); // the link connects and settles
    const c0 = cpuSeconds(proc.pid!) ?? 0;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const cpu = (cpuSeconds(proc.pid!) ?? 0) - c0;
    const m = readFileSync(`/proc/${proc.pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB/m);
    return { rss: Number(m?.[1] ?? 0) * 1024, cpuPercent: (cpu / ((performance.now() - t0) / 1000)) * 100 };
  } finally {
    proc.kill("SIGTERM");
    await new Promise((r) => proc.once("exit", r));
  }
}

/**
 * What the link adds to the appliance itself: `cohesix serve` (host board,
 * built-in workers, no worker running) without and with `--fleet`, its
 * resident set after `seconds` and its CPU meanwhile. Needs `npm run build`.
 */
export async function applianceCost(url: string, dir: string, options: { seconds: number }): Promise<{ plain: { rss: number; cpuPercent: number }; fleet: { rss: number; cpuPercent: number } }> {
  await mkdir(dir, { recursive: true });
  const keys = await writeKeyPair(dir, { name: "queen" });
  const plain = await serveCost(join(dir, "plain"), keys.publicPath, [], options.seconds);
  const fleet = await serveCost(join(dir, "fleet"), keys.publicPath, ["--fleet", url, "--fleet-id", "cost-1"], options.seconds);
  return { plain, fleet };
}
