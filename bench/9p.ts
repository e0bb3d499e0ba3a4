/**
 * `npm run bench -- 9p`: 9P2000.L throughput and latency, taken with the
 * NineDoor client against NineDoor and, for comparison, diod.
 *
 * Three figures per target, each with `--outstanding N` requests in flight:
 * - metadata: lanes of walk → getattr → clunk on `--path` (each step waits for
 *   the previous reply, as a kernel client does; N lanes run at once). Ops/s
 *   counts 9P requests; cycles/s counts whole walk+getattr+clunk cycles.
 * - bulk read: one open fid on `--read-path`, N pipelined Treads of a full
 *   iounit each, at msize 64 KiB and 1 MiB (+ IOHDRSZ). MB/s = 10^6 bytes/s.
 * - ctl round trip (our appliance only): on one fid opened rw on
 *   /queen/ctl, write a valid command and read its reply, one at a time.
 *
 * With `--addr` the figures are taken against that server only. Without it
 * the bench starts its own targets as child processes on 127.0.0.1 (our
 * bench server, the real appliance for ctl, and diod exporting a temp dir),
 * prints ratios ours/diod, and kills the children by PID at the end.
 *
 * @example
 * ```sh
 * npm run bench -- 9p                      # ours vs diod, started here
 * npm run bench -- 9p --addr tcp!127.0.0.1!5640 --aname "$TICKET" --path proc/boot --read-path proc/boot --ctl
 * ```
 * @module
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir, cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { IOHDRSZ, GETATTR_BASIC, NineClient, dialWithRetry, type Fid } from "../nine-door/index.ts";
import { mintTicket, writeKeyPair } from "../root-task/index.ts";

const USAGE = `usage: npm run bench -- 9p [OPTIONS]

  --addr DIAL          measure this server only (tcp!HOST!PORT); default: start ours and diod
  --aname TEXT         attach name (ticket for NineDoor, export path for diod)
  --uname TEXT         attach uname (default "root")
  --n-uname N          attach n_uname (default 0)
  --path FILE          file for walk+getattr+clunk cycles (default "meta")
  --read-path FILE     large file for bulk reads (default "big")
  --ctl                with --addr: also measure /queen/ctl round trips (needs a queen ticket)
  --targets LIST       without --addr: which to start, "ours,diod" (default both)
  --figures LIST       which figures to take, "meta,bulk,ctl" (default all)
  --outstanding N      requests kept in flight (default 32)
  --duration S         seconds per measurement (default 3)
  --msize LIST         bulk read msizes in KiB (default "64,1024"; IOHDRSZ is added)
  --size BYTES         size of the bulk file the bench creates (default 128 MiB)
  --cpu-prof DIR       run our server under node --cpu-prof, profiles into DIR
  --diod PATH          diod binary (default /usr/sbin/diod)
`;

/** One server to measure. */
interface Target {
  readonly name: string;
  readonly addr: string;
  readonly aname: string;
  readonly uname: string;
  readonly nUname: number;
  readonly path: string;
  readonly readPath: string;
  /** Where to measure ctl round trips (our appliance), if anywhere. */
  readonly ctl?: { readonly addr: string; readonly aname: string; readonly pid?: number };
  /** The server's process, when the bench started it: its CPU time is reported. */
  readonly pid?: number;
}

/** Figures of one target. */
interface Figures {
  meta?: { opsPerS: number; cyclesPerS: number } & Cpu;
  bulk: Map<number, { mbPerS: number; msize: number } & Cpu>;
  ctl?: { p50Ms: number; p99Ms: number; perS: number; n: number } & Cpu;
}

/** Share of one core used during a figure (1 = one core busy). */
interface Cpu {
  serverCpu?: number;
  clientCpu?: number;
}

interface Options {
  readonly figures: ReadonlySet<string>;
  readonly outstanding: number;
  readonly durationS: number;
  readonly msizes: readonly number[];
}

const TARGETS = {
  meta: 20_000,
  bulkBytesPerS: 1e9,
  ctlP99Ms: 0.5,
};

/** Runs the benchmark; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      addr: { type: "string" },
      aname: { type: "string" },
      uname: { type: "string", default: "root" },
      "n-uname": { type: "string", default: "0" },
      path: { type: "string", default: "meta" },
      "read-path": { type: "string", default: "big" },
      ctl: { type: "boolean", default: false },
      targets: { type: "string", default: "ours,diod" },
      figures: { type: "string", default: "meta,bulk,ctl" },
      outstanding: { type: "string", default: "32" },
      duration: { type: "string", default: "3" },
      msize: { type: "string", default: "64,1024" },
      size: { type: "string", default: String(128 << 20) },
      "cpu-prof": { type: "string" },
      diod: { type: "string", default: "/usr/sbin/diod" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const opts: Options = {
    figures: new Set(values.figures!.split(",")),
    outstanding: positive("--outstanding", values.outstanding!),
    durationS: positive("--duration", values.duration!),
    msizes: values.msize!.split(",").map((k) => positive("--msize", k) * 1024 + IOHDRSZ),
  };
  const size = positive("--size", values.size!);

  console.log(`9p bench: node ${process.version}, ${cpus().length} cpus (${cpus()[0]?.model ?? "?"}), outstanding ${opts.outstanding}, ${opts.durationS} s per figure, load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  const children: Child[] = [];
  const scratch: string[] = [];
  const results: Array<{ target: Target; figures: Figures }> = [];
  try {
    const targets: Target[] = [];
    if (values.addr !== undefined) {
      targets.push({
        name: "target",
        addr: values.addr,
        aname: values.aname ?? "",
        uname: values.uname!,
        nUname: Number(values["n-uname"]),
        path: values.path!,
        readPath: values["read-path"]!,
        ...(values.ctl ? { ctl: { addr: values.addr, aname: values.aname ?? "" } } : {}),
      });
    } else {
      const want = new Set(values.targets!.split(","));
      if (want.has("ours")) targets.push(await startOurs(size, values["cpu-prof"], children, scratch));
      if (want.has("diod")) {
        if (existsSync(values.diod!)) targets.push(await startDiod(values.diod!, size, children, scratch));
        else console.log(`diod not found at ${values.diod}: measuring ours only (apt-get install diod, or --diod PATH)`);
      }
    }
    for (const target of targets) {
      console.log(`\n== ${target.name} (${target.addr}) ==`);
      results.push({ target, figures: await measure(target, opts) });
    }
  } finally {
    for (const c of children) await c.stop();
    for (const d of scratch) rmSync(d, { recursive: true, force: true });
  }
  report(results, opts);
  return 0;
}

function positive(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${JSON.stringify(text)}`);
  return n;
}

// ---- measurements ----

/** CPU seconds (user + system, all threads) a process has used so far; undefined if unknown. */
function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of proc(5) (utime, stime), counted after "pid (comm) ".
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}
const CLOCK_TICKS = 100;

/** Runs `fn` and reports the share of one core `pid` used meanwhile. */
async function withCpu<T extends { seconds: number }>(pid: number | undefined, fn: () => Promise<T>): Promise<T & Cpu> {
  const before = cpuSeconds(pid);
  const clientBefore = process.cpuUsage();
  const r = await fn();
  const after = cpuSeconds(pid);
  const c = process.cpuUsage(clientBefore);
  const clientCpu = (c.user + c.system) / 1e6 / r.seconds;
  return { ...r, clientCpu, ...(before !== undefined && after !== undefined ? { serverCpu: (after - before) / r.seconds } : {}) };
}

function cpuNote(r: { serverCpu?: number; clientCpu?: number }, rate?: { value: number; unit: string }): string {
  const parts = [];
  if (r.serverCpu !== undefined) {
    parts.push(`server ${(r.serverCpu * 100).toFixed(0)}% cpu`);
    // What one fully busy server core would do at this cost per op: a
    // figure that holds up when the client or a loaded machine is the limit.
    if (rate && r.serverCpu > 0.02) parts.push(`≈ ${fmt(rate.value / r.serverCpu)} ${rate.unit} per server core`);
  }
  if (r.clientCpu !== undefined) parts.push(`client ${(r.clientCpu * 100).toFixed(0)}% cpu`);
  return parts.length ? `  [${parts.join(", ")}]` : "";
}

async function connect(addr: string, msize: number, t: { aname: string; uname: string; nUname: number }): Promise<{ client: NineClient; root: Fid }> {
  const client = await NineClient.dial(addr, { msize, dialect: "9P2000.L" });
  const root = await client.attach({ aname: t.aname, uname: t.uname, nUname: t.nUname });
  return { client, root };
}

async function measure(t: Target, o: Options): Promise<Figures> {
  const figures: Figures = { bulk: new Map() };
  if (o.figures.has("meta")) {
    const { client, root } = await connect(t.addr, 8192 + IOHDRSZ, t);
    try {
      figures.meta = await metadata(client, root, t.path, o, t.pid);
      console.log(`metadata   ${fmt(figures.meta.opsPerS)} ops/s  (${fmt(figures.meta.cyclesPerS)} walk+getattr+clunk cycles/s)${cpuNote(figures.meta, { value: figures.meta.opsPerS, unit: "ops/s" })}`);
    } finally {
      client.close();
    }
  }
  for (const msize of o.figures.has("bulk") ? o.msizes : []) {
    const { client, root } = await connect(t.addr, msize, t);
    try {
      const r = await bulkRead(client, root, t.readPath, o, t.pid);
      figures.bulk.set(msize, r);
      console.log(`bulk read  ${fmt(r.mbPerS)} MB/s  at msize ${kib(msize)} (negotiated ${kib(r.msize)})${cpuNote(r, { value: r.mbPerS, unit: "MB/s" })}`);
    } finally {
      client.close();
    }
  }
  if (t.ctl && o.figures.has("ctl")) {
    const { client, root } = await connect(t.ctl.addr, 8192 + IOHDRSZ, { ...t, aname: t.ctl.aname, uname: "queen" });
    try {
      figures.ctl = await ctlRoundTrip(client, root, o, t.ctl.pid);
      console.log(`ctl        p50 ${figures.ctl.p50Ms.toFixed(3)} ms  p99 ${figures.ctl.p99Ms.toFixed(3)} ms  (${fmt(figures.ctl.perS)} commands/s, n=${figures.ctl.n})${cpuNote(figures.ctl)}`);
    } finally {
      client.close();
    }
  }
  return figures;
}

function names(path: string): string[] {
  return path.split("/").filter((p) => p !== "");
}

/** Runs `lanes` copies of `step` until the deadline; warms up first. */
async function timed(o: Options, lanes: number, step: (lane: number) => Promise<number>, pid?: number, onStart?: () => void): Promise<{ units: number; seconds: number } & Cpu> {
  const warmup = Math.min(1, o.durationS / 4) * 1000;
  let counting = false;
  let units = 0;
  let deadline = performance.now() + warmup;
  const lane = async (_: unknown, i: number): Promise<void> => {
    while (performance.now() < deadline) {
      const n = await step(i);
      if (counting) units += n;
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  counting = true;
  onStart?.();
  return withCpu(pid, async () => {
    const start = performance.now();
    deadline = start + o.durationS * 1000;
    await Promise.all(Array.from({ length: lanes }, lane));
    return { units, seconds: (performance.now() - start) / 1000 };
  });
}

async function metadata(client: NineClient, root: Fid, path: string, o: Options, pid?: number): Promise<NonNullable<Figures["meta"]>> {
  const wnames = names(path);
  const step = async (): Promise<number> => {
    const fid = client.allocFid();
    try {
      const w = await client.rpc({ type: "Twalk", fid: root.fid, newfid: fid, names: wnames });
      if (w.qids.length !== wnames.length) throw new Error(`walk to ${path} stopped after ${w.qids.length} names`);
      await client.rpc({ type: "Tgetattr", fid, requestMask: GETATTR_BASIC });
      await client.rpc({ type: "Tclunk", fid });
    } finally {
      client.releaseFid(fid);
    }
    return 1;
  };
  const { units, seconds, ...cpu } = await timed(o, o.outstanding, step, pid);
  return { opsPerS: (units * 3) / seconds, cyclesPerS: units / seconds, ...cpu };
}

async function bulkRead(client: NineClient, root: Fid, path: string, o: Options, pid?: number): Promise<{ mbPerS: number; msize: number } & Cpu> {
  const file = await root.walk(path);
  await file.open("r");
  const st = await file.stat();
  const unit = client.iounit;
  if (st.length < unit) throw new Error(`${path} is ${st.length} bytes: too small for reads of ${unit}`);
  let next = 0;
  // One reply buffer per lane, reused: a lane's data is consumed before its next read.
  const buffers = Array.from({ length: o.outstanding }, () => Buffer.allocUnsafe(client.msize));
  const step = async (lane: number): Promise<number> => {
    let offset = next;
    if (offset + unit > st.length) offset = 0;
    next = offset + unit;
    const r = await client.rpc({ type: "Tread", fid: file.fid, offset, count: unit }, undefined, { receiveBuffer: buffers[lane]! });
    if (r.data.length === 0) throw new Error(`read of ${path} at ${offset} returned nothing`);
    return r.data.length;
  };
  const { units, seconds, ...cpu } = await timed(o, o.outstanding, step, pid);
  await file.clunk();
  return { mbPerS: units / seconds / 1e6, msize: client.msize, ...cpu };
}

const CTL_COMMAND = '{"budget":{"ttl_s":120,"ops":1000}}';

async function ctlRoundTrip(client: NineClient, root: Fid, o: Options, pid?: number): Promise<NonNullable<Figures["ctl"]>> {
  const ctl = await root.walk("queen/ctl");
  await ctl.open("rw");
  const command = Buffer.from(CTL_COMMAND);
  const samples: number[] = [];
  let recording = false;
  const step = async (): Promise<number> => {
    const t0 = performance.now();
    await client.rpc({ type: "Twrite", fid: ctl.fid, offset: 0, data: command });
    const r = await client.rpc({ type: "Tread", fid: ctl.fid, offset: 0, count: 4096 });
    const t1 = performance.now();
    if (r.data[0] !== 0x7b) throw new Error(`ctl reply is not JSON: ${Buffer.from(r.data).toString()}`);
    if (recording) samples.push(t1 - t0);
    return 1;
  };
  // Latency, not throughput: one command at a time.
  const { units, seconds, ...cpu } = await timed(o, 1, step, pid, () => (recording = true));
  await ctl.clunk();
  samples.sort((a, b) => a - b);
  const pct = (p: number) => samples[Math.min(samples.length - 1, Math.floor((p / 100) * samples.length))]!;
  return { p50Ms: pct(50), p99Ms: pct(99), perS: units / seconds, n: samples.length, ...cpu };
}

// ---- report ----

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function kib(msize: number): string {
  const payload = msize - IOHDRSZ;
  return payload % 1024 === 0 ? `${payload / 1024} KiB+${IOHDRSZ}` : `${msize} B`;
}

function verdict(ok: boolean): string {
  return ok ? "PASS" : "MISS";
}

function report(results: ReadonlyArray<{ target: Target; figures: Figures }>, o: Options): void {
  console.log("\n== summary ==");
  const ours = results.find((r) => r.target.name === "ours") ?? (results.length === 1 ? results[0] : undefined);
  const diod = results.find((r) => r.target.name === "diod");
  const big = Math.max(...o.msizes);
  if (ours && diod) {
    const ratio = (a: number | undefined, b: number | undefined) => (a && b ? `${(a / b).toFixed(2)}x` : "n/a");
    console.log(`ratio ours/diod metadata ops/s: ${ratio(ours.figures.meta?.opsPerS, diod.figures.meta?.opsPerS)}`);
    for (const m of o.msizes) {
      console.log(`ratio ours/diod bulk read at msize ${kib(m)}: ${ratio(ours.figures.bulk.get(m)?.mbPerS, diod.figures.bulk.get(m)?.mbPerS)}`);
    }
  }
  if (!ours) return;
  const f = ours.figures;
  if (f.meta) {
    console.log(`${verdict(f.meta.opsPerS >= TARGETS.meta)}  metadata ≥ ${fmt(TARGETS.meta)} ops/s: ${fmt(f.meta.opsPerS)} requests/s (${fmt(f.meta.cyclesPerS)} cycles/s: ${f.meta.cyclesPerS >= TARGETS.meta ? "also" : "not"} ≥ ${fmt(TARGETS.meta)})`);
  }
  const bulk = f.bulk.get(big);
  if (bulk) console.log(`${verdict(bulk.mbPerS * 1e6 >= TARGETS.bulkBytesPerS)}  bulk read ≥ 1 GB/s at msize ${kib(big)}: ${fmt(bulk.mbPerS)} MB/s`);
  if (f.ctl) console.log(`${verdict(f.ctl.p99Ms <= TARGETS.ctlP99Ms)}  ctl p99 ≤ ${TARGETS.ctlP99Ms} ms: ${f.ctl.p99Ms.toFixed(3)} ms`);
  if (diod) {
    const d = diod.figures;
    if (f.meta && d.meta) console.log(`${verdict(f.meta.opsPerS >= d.meta.opsPerS)}  metadata ops/s ≥ diod's: ${fmt(f.meta.opsPerS)} vs ${fmt(d.meta.opsPerS)}`);
    for (const m of o.msizes) {
      const a = f.bulk.get(m);
      const b = d.bulk.get(m);
      if (a && b) console.log(`${verdict(a.mbPerS >= b.mbPerS)}  bulk MB/s at msize ${kib(m)} ≥ diod's: ${fmt(a.mbPerS)} vs ${fmt(b.mbPerS)}`);
    }
  }
}

// ---- child processes ----

interface Child {
  readonly pid: number;
  stop(): Promise<void>;
}

/** Spawns `cmd` and, if `ready` is given, waits for a stdout line matching it. */
async function startChild(cmd: string, args: readonly string[], ready: RegExp | undefined, children: Child[]): Promise<{ child: Child; match: RegExpMatchArray | undefined }> {
  const proc: ChildProcess = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  proc.stderr!.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = once(proc, "exit");
  const child: Child = {
    pid: proc.pid ?? -1,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      process.kill(proc.pid!, "SIGTERM");
      const timer = setTimeout(() => {
        if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid!, "SIGKILL");
      }, 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  children.push(child);
  const spawned = await Promise.race([once(proc, "spawn").then(() => true), once(proc, "error").then(([e]) => { throw new Error(`${cmd}: ${(e as Error).message}`); })]);
  void spawned;
  if (!ready) return { child, match: undefined };
  const lines = createInterface({ input: proc.stdout! });
  const match = await new Promise<RegExpMatchArray>((resolveLine, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} did not print READY within 30 s: ${stderr}`)), 30_000);
    lines.on("line", (line) => {
      const m = line.match(ready);
      if (m) {
        clearTimeout(timer);
        resolveLine(m);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited before READY: ${stderr}`));
    });
  });
  return { child, match };
}

/** Our bench server (bulk + metadata) and the real appliance (ctl). */
async function startOurs(size: number, profDir: string | undefined, children: Child[], scratch: string[]): Promise<Target> {
  const prof = profDir ? ["--cpu-prof", "--cpu-prof-dir", resolve(profDir)] : [];
  const { child, match } = await startChild(process.execPath, [...prof, "scripts/run-ts.mjs", "bench/serve-target.ts", "--size", String(size)], /^READY (\S+)/, children);
  const addr = match![1]!;

  const dir = mkdtempSync(join(tmpdir(), "cohesix-bench-"));
  scratch.push(dir);
  const keys = await writeKeyPair(dir, { name: "queen" });
  if (!existsSync("bin/cohesix.js") || !existsSync("dist/cohesix.mjs")) throw new Error("bin/cohesix.js is not built: run npm run build");
  const app = await startChild(
    process.execPath,
    [...prof, "bin/cohesix.js", "serve", "--board", "host", "--listen", "127.0.0.1:0", "--state", join(dir, "state"), "--queen-pub", keys.publicPath],
    /^READY (\S+)/,
    children,
  );
  const ticket = mintTicket({ role: "queen", sub: "queen" }, keys.privateKey, { ttlS: 3600 });
  console.log(`started ours: bench server ${addr}, appliance ${app.match![1]}`);
  return {
    name: "ours",
    addr,
    aname: "",
    uname: "root",
    nUname: 0,
    path: "meta",
    readPath: "big",
    ctl: { addr: app.match![1]!, aname: ticket, pid: app.child.pid },
    pid: child.pid,
  };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** diod exporting a temp dir holding `meta` and a `big` file of `size` bytes. */
async function startDiod(diod: string, size: number, children: Child[], scratch: string[]): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), "cohesix-bench-diod-"));
  scratch.push(dir);
  writeFileSync(join(dir, "meta"), "cohesix bench metadata file\n");
  const big = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) big[i] = i & 0xff;
  writeFileSync(join(dir, "big"), big);
  const port = await freePort();
  // -n: no auth; -S -U root: squash every attach to root so the server
  // needs no setuid; -L stderr keeps syslog out of it.
  const { child } = await startChild(diod, ["-f", "-n", "-S", "-U", "root", "-L", "stderr", "-l", `127.0.0.1:${port}`, "-e", dir], undefined, children);
  const addr = `tcp!127.0.0.1!${port}`;
  const conn = await dialWithRetry(addr, { attempts: 50, delayMs: 100, timeoutMs: 2000 });
  conn.destroy();
  console.log(`started diod (pid ${child.pid}) on ${addr} exporting ${dir}`);
  return { name: "diod", addr, aname: dir, uname: "root", nUname: 0, path: "meta", readPath: "big", pid: child.pid };
}

