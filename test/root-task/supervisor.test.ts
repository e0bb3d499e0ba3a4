import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { BusyError, InvalidError, NotFoundError } from "../../nine-door/index.ts";
import { Supervisor, type WorkerExit } from "../../root-task/index.ts";

let tmp: string;
let supervisors: Supervisor[] = [];

/** Test programs, relative to `tmp`. */
const PROGRAMS = {
  // Reports what it was given on stderr, then waits to be stopped.
  report: {
    entry: "report.mjs",
    role: "worker-report",
    source: `
      import { readFileSync, closeSync } from "node:fs";
      const ticket = readFileSync(Number(process.env.COHESIX_TICKET_FD)).toString();
      closeSync(Number(process.env.COHESIX_TICKET_FD));
      const env = Object.keys(process.env).filter((k) => k.startsWith("COHESIX_") || k === "EXTRA").sort()
        .map((k) => k + "=" + (k === "COHESIX_TICKET_FD" ? process.env[k] : process.env[k].length)).join(" ");
      process.stderr.write("ticket=" + ticket + " argv=" + process.argv.length + " " + env + "\\n");
      process.on("SIGTERM", () => { process.stderr.write("bye\\n"); process.exit(0); });
      process.stdout.write("to stdout\\n");
      setInterval(() => {}, 1000);
    `,
  },
  // Ignores SIGTERM; says so once its handler is installed.
  stubborn: {
    entry: "stubborn.mjs",
    role: "worker-stubborn",
    source: `
      process.on("SIGTERM", () => process.stderr.write("ignoring SIGTERM\\n"));
      process.stderr.write("ready\\n");
      setInterval(() => {}, 1000);
    `,
  },
  exit3: { entry: "exit3.mjs", role: "worker-exit", source: `process.stderr.write("failing\\n"); process.exit(3);` },
} as const;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "cohesix-supervisor-"));
  for (const p of Object.values(PROGRAMS)) await writeFile(join(tmp, p.entry), p.source);
});

afterEach(async () => {
  await Promise.all(supervisors.map((s) => s.stopAll(100)));
  supervisors = [];
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function supervisor(onStale?: (id: string) => void): Supervisor {
  const s = new Supervisor({ programs: PROGRAMS, root: tmp, ...(onStale ? { onStale } : {}) });
  supervisors.push(s);
  return s;
}

interface Watched {
  pid: number;
  output: () => string;
  exit: Promise<WorkerExit>;
}

function spawn(s: Supervisor, id: string, kind: keyof typeof PROGRAMS, extra: { intervalMs?: number; env?: Record<string, string> } = {}): Watched {
  const chunks: Buffer[] = [];
  let resolveExit!: (e: WorkerExit) => void;
  const exit = new Promise<WorkerExit>((r) => (resolveExit = r));
  const pid = s.spawn({
    id,
    kind,
    ticket: "SECRET-TICKET-123",
    addr: "unix!/nonexistent/nd.sock",
    intervalMs: extra.intervalMs ?? 1000,
    ...(extra.env ? { env: extra.env } : {}),
    onStderr: (c) => chunks.push(c),
    onExit: (code, signal) => resolveExit({ code, signal }),
  });
  return { pid, output: () => Buffer.concat(chunks).toString(), exit };
}

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("Supervisor.spawn", () => {
  test("passes the ticket on descriptor 3 and the identity in the environment, never in argv", async () => {
    const s = supervisor();
    const w = spawn(s, "worker-1", "report", { env: { EXTRA: "yes", COHESIX_WORKER_ID: "spoofed" } });
    expect(s.pid("worker-1")).toBe(w.pid);
    await until(() => w.output().includes("to stdout"));
    const line = w.output().split("\n").find((l) => l.startsWith("ticket="))!;
    expect(line).toBe(
      "ticket=SECRET-TICKET-123 argv=2 COHESIX_ADDR=25 COHESIX_INTERVAL_MS=4 COHESIX_TICKET_FD=3 " +
        "COHESIX_WORKER_ID=8 COHESIX_WORKER_ROLE=13 EXTRA=3",
    );
  });

  test("delivers stderr and stdout chunks, and reports the exit code once", async () => {
    const s = supervisor();
    const w = spawn(s, "worker-1", "exit3");
    expect(await w.exit).toEqual({ code: 3, signal: null });
    expect(w.output()).toBe("failing\n");
    expect(s.pid("worker-1")).toBeUndefined();
    expect(s.ids).toEqual([]);
  });

  test("refuses a second process for a running id, an unknown kind, and a bad interval", () => {
    const s = supervisor();
    spawn(s, "worker-1", "report");
    expect(() => spawn(s, "worker-1", "report")).toThrow(BusyError);
    const unknown = (() => {
      try {
        spawn(s, "worker-2", "nope" as keyof typeof PROGRAMS);
      } catch (err) {
        return err;
      }
    })();
    expect(unknown).toBeInstanceOf(NotFoundError);
    expect((unknown as Error).message).toBe('not found: no worker program "nope" (known: exit3, report, stubborn)');
    expect(() => spawn(s, "worker-3", "report", { intervalMs: 0 })).toThrow(InvalidError);
  });

  test("a built-in kind whose bundle is missing answers not found: naming the file", () => {
    const s = new Supervisor({ root: tmp });
    expect(() => s.spawn({ id: "w", kind: "heartbeat", ticket: "t", addr: "unix!/x", intervalMs: 1000 })).toThrow(
      /^not found: worker program heartbeat: .*dist\/workers\/heartbeat\.mjs is missing/,
    );
  });
});

describe("Supervisor.stop", () => {
  test("SIGTERM stops a cooperative worker within its grace period", async () => {
    const s = supervisor();
    const w = spawn(s, "worker-1", "report");
    await until(() => w.output().includes("to stdout"));
    expect(await s.stop("worker-1", { graceMs: 5000 })).toEqual({ code: 0, signal: null });
    expect(w.output()).toContain("bye\n");
  });

  test("escalates to SIGKILL for a worker ignoring SIGTERM, and resolves once it is gone", async () => {
    const s = supervisor();
    const w = spawn(s, "worker-1", "stubborn");
    await until(() => w.output().includes("ready"));
    const started = Date.now();
    const exit = await s.stop("worker-1", { graceMs: 300 });
    expect(exit).toEqual({ code: null, signal: "SIGKILL" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(w.output()).toContain("ignoring SIGTERM");
    expect(() => process.kill(w.pid, 0)).toThrow(/ESRCH/);
    await expect(s.stop("worker-1")).rejects.toBeInstanceOf(NotFoundError);
  });

  test("stopAll stops every worker", async () => {
    const s = supervisor();
    const a = spawn(s, "worker-1", "report");
    const b = spawn(s, "worker-2", "stubborn");
    await until(() => b.output().includes("ready"));
    await s.stopAll(200);
    expect(s.ids).toEqual([]);
    for (const pid of [a.pid, b.pid]) expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
  });
});

describe("Supervisor watchdog", () => {
  test("calls onStale once per episode when beats stop for 3 intervals", async () => {
    const stale: Array<{ id: string; at: number }> = [];
    const s = supervisor((id) => stale.push({ id, at: Date.now() }));
    const started = Date.now();
    spawn(s, "worker-1", "report", { intervalMs: 50 });
    // Beating keeps it fresh.
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 50));
      s.heartbeat("worker-1");
    }
    expect(stale).toEqual([]);
    const lastBeat = Date.now();
    await until(() => stale.length === 1);
    expect(stale[0]!.id).toBe("worker-1");
    expect(stale[0]!.at - lastBeat).toBeGreaterThanOrEqual(140);
    await new Promise((r) => setTimeout(r, 400));
    expect(stale).toHaveLength(1);
    // A beat ends the episode; silence starts a new one.
    s.heartbeat("worker-1");
    await until(() => stale.length === 2);
    expect(Date.now() - started).toBeGreaterThan(600);
  });

  test("a stopped worker is never reported stale", async () => {
    const stale: string[] = [];
    const s = supervisor((id) => stale.push(id));
    spawn(s, "worker-1", "report", { intervalMs: 30 });
    await s.stop("worker-1", { graceMs: 1000 });
    await new Promise((r) => setTimeout(r, 200));
    expect(stale).toEqual([]);
  });
});
