/**
 * `npm run bench -- cli`: what one `cohesix` invocation costs, side by side
 * with a bare `node -e 0`. The bench starts a host-board appliance
 * (`cohesix serve --board host` on 127.0.0.1, port 0, a fresh state folder
 * and queen key; stopped by PID), then runs each command `--runs` times,
 * interleaved round by round so that load on the machine falls on all of
 * them alike: `node -e 0`, `cohesix --version` (the CLI's own floor: the
 * verb table, no verb), and the data verbs `ls /`, `cat /proc/boot` and
 * `ctl '{"budget":{"ops":N}}'` (a durable commit). Printed per command:
 * median, p90 and min wall time, and the median's ratio to `node -e 0`'s.
 * The target for the data verbs is ≤ 2× (docs/benchmarks.md).
 *
 * Build first (`npm run build`): it measures bin/cohesix.js as users run it.
 *
 * @example
 * ```sh
 * npm run bench -- cli --runs 30
 * npm run bench -- cli --compare /tmp/old/bin/cohesix.js   # another build, side by side
 * ```
 * @module
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { load, percentile, verdict } from "./child.ts";

const USAGE = `usage: npm run bench -- cli [OPTIONS]

  --runs N         invocations of each command (default 20)
  --compare FILE   also run ls, cat and ctl with another build's bin/cohesix.js (e.g. an older commit's)
`;

const BIN = resolve("bin/cohesix.js");

/** Starts `cohesix serve --board host` and resolves once it prints READY. */
async function startHostBoard(dir: string, env: NodeJS.ProcessEnv): Promise<{ pid: number; addr: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [BIN, "serve", "--board", "host", "--listen", "127.0.0.1:0", "--state", join(dir, "state"), "--queen-pub", join(dir, "keys", "queen.pub")], {
    env,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error("cohesix serve did not start");
  const addr = await new Promise<string>((ok, fail) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on("line", (line) => {
      if (line.startsWith("READY ")) ok(line.slice(6));
    });
    child.once("exit", (code) => fail(new Error(`cohesix serve exited ${code} before READY`)));
    setTimeout(() => fail(new Error("cohesix serve printed no READY within 30 s")), 30_000).unref();
  });
  return {
    pid,
    addr,
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null) return done();
        child.once("exit", () => done());
        process.kill(pid, "SIGTERM");
      }),
  };
}

/** One invocation's wall time in ms; throws if it fails. */
function time(args: readonly string[], env: NodeJS.ProcessEnv): number {
  const started = performance.now();
  const r = spawnSync(process.execPath, args, { env, stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  const ms = performance.now() - started;
  if (r.status !== 0) throw new Error(`node ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return ms;
}

/** Runs the benchmark; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({ args: [...argv], options: { runs: { type: "string" }, compare: { type: "string" }, help: { type: "boolean", short: "h" } } });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const runs = Number(values.runs ?? "20");
  if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`--runs takes a whole number ≥ 1, got ${values.runs}`);
  if (!existsSync(join("dist", "cohesix.mjs"))) throw new Error("bin/cohesix.js is not built: run npm run build");

  const dir = mkdtempSync(join(tmpdir(), "cohesix-bench-cli-"));
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: join(dir, "config") };
  delete env.COHESIX_ADDR;
  delete env.COHESIX_KEY;
  time([BIN, "keygen", "--out", join(dir, "keys")], env);
  const board = await startHostBoard(dir, env);
  try {
    const remote = ["--addr", board.addr, "--key", join(dir, "keys", "queen.key")];
    let ops = 0;
    const commands: { name: string; args: () => string[] }[] = [
      { name: "node -e 0", args: () => ["-e", "0"] },
      { name: "cohesix --version", args: () => [BIN, "--version"] },
      { name: "cohesix ls /", args: () => [BIN, "ls", "/", ...remote] },
      { name: "cohesix cat /proc/boot", args: () => [BIN, "cat", "/proc/boot", ...remote] },
      { name: "cohesix ctl (a commit)", args: () => [BIN, "ctl", JSON.stringify({ budget: { ops: 1000 + ++ops } }), ...remote] },
    ];
    const other = values.compare === undefined ? undefined : resolve(values.compare);
    if (other !== undefined) {
      commands.push(
        { name: "compared ls /", args: () => [other, "ls", "/", ...remote] },
        { name: "compared cat /proc/boot", args: () => [other, "cat", "/proc/boot", ...remote] },
        { name: "compared ctl (a commit)", args: () => [other, "ctl", JSON.stringify({ budget: { ops: 1000 + ++ops } }), ...remote] },
      );
    }
    // One warm-up round: the page cache, not the first run, is what users see.
    for (const c of commands) time(c.args(), env);
    const samples = new Map(commands.map((c) => [c.name, [] as number[]]));
    for (let i = 0; i < runs; i++) for (const c of commands) samples.get(c.name)!.push(time(c.args(), env));

    const base = percentile([...samples.get("node -e 0")!].sort((a, b) => a - b), 50);
    console.log(`cli: ${runs} runs each, interleaved, against a host board at ${board.addr} (load ${load()})${other ? `; compared: ${other}` : ""}`);
    console.log(`${"command".padEnd(26)} ${"median".padStart(8)} ${"p90".padStart(8)} ${"min".padStart(8)}  ratio`);
    let worst = 0;
    for (const c of commands) {
      const s = [...samples.get(c.name)!].sort((a, b) => a - b);
      const median = percentile(s, 50);
      const ratio = median / base;
      if (/^cohesix (ls|cat|ctl)/.test(c.name)) worst = Math.max(worst, ratio);
      console.log(`${c.name.padEnd(26)} ${`${median.toFixed(1)} ms`.padStart(8)} ${`${percentile(s, 90).toFixed(1)} ms`.padStart(8)} ${`${s[0]!.toFixed(1)} ms`.padStart(8)}  ${ratio.toFixed(2)}x`);
    }
    console.log(`data verbs: worst median ${worst.toFixed(2)}x node -e 0 (target ≤ 2x) ${verdict(worst <= 2)}`);
    return 0;
  } finally {
    await board.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
