/**
 * Acceptance tests of the `cohesix` program as a user runs it: a real
 * `cohesix serve --board host` child process on an ephemeral 127.0.0.1
 * port, and one `node bin/cohesix.js …` process per command. Exit codes:
 * 0 success, 1 a 9P error printed as one `class: message` line, 2 usage.
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BIN, ROOT, cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

let scratch: Scratch;
let served: Served;
/** Runs a remote command against the served appliance with --addr and --key. */
const remote = (args: readonly string[]) => cohesix([...args, "--addr", served.addr, "--key", scratch.queenKey], { env: scratch.env });

beforeAll(async () => {
  scratch = await makeScratch();
  served = await serve(scratch);
});

afterAll(async () => {
  await served?.stop();
  await scratch?.remove();
});

/** A single error line: `class: message`. */
function expectOneErrorLine(stderr: string, cls: string): void {
  const lines = stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^${cls}: \\S`));
}

describe("cohesix serve --board host", () => {
  test("prints exactly one line, READY tcp!127.0.0.1!PORT, on stdout", async () => {
    await sleep(200); // anything printed after READY would show up by now
    expect(served.lines).toHaveLength(1);
    expect(served.lines[0]).toMatch(/^READY tcp!127\.0\.0\.1!\d+$/);
    expect(served.port).toBeGreaterThan(0);
  });

  test("exits 0 promptly on SIGTERM", async () => {
    const other = await makeScratch();
    try {
      const s = await serve(other);
      const started = Date.now();
      const result = await s.stop();
      expect(result.exitCode, `${result.signal ?? ""} ${result.stderr}`).toBe(0);
      expect(result.signal).toBeUndefined();
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await other.remove();
    }
  });

  test("refuses a malformed --listen address as a usage error (exit 2)", async () => {
    const r = await cohesix(["serve", "--board", "host", "--listen", "nowhere", "--state", join(scratch.dir, "state2"), "--queen-pub", scratch.queenPub], { env: scratch.env });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/usage: cohesix serve/);
  });
});

describe("remote commands against a served appliance", () => {
  test("ls / shows gpu log proc queen worker", async () => {
    const r = await remote(["ls", "/"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.split("\n").map((l) => l.replace(/\/$/, ""))).toEqual(["gpu", "log", "proc", "queen", "worker"]);
  });

  test("cat /proc/boot prints the boot banner", async () => {
    const r = await remote(["cat", "/proc/boot"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^cohesix \d+\.\d+\.\d+\n/);
    expect(r.stdout).toContain("board=host\n");
    expect(r.stdout).toMatch(/^image=none$/m);
  });

  test("ctl with a valid spawn command exits 0", async () => {
    const r = await remote(["ctl", '{"spawn":"heartbeat","ticks":3}']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe("");
  });

  test("ctl with an unknown worker exits 1 with one not found: line listing the known ones", async () => {
    const r = await remote(["ctl", '{"spawn":"nope"}']);
    expect(r.exitCode).toBe(1);
    expectOneErrorLine(r.stderr, "not found");
    expect(r.stderr).toContain("known: gpu, heartbeat, inference");
    expect(r.stderr).toContain("nope");
  });

  test("cat /log/queen.log shows the accepted and the refused command", async () => {
    const r = await remote(["cat", "/log/queen.log"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/ctl from queen: \{"spawn":"heartbeat","ticks":3\}/);
    expect(r.stdout).toMatch(/ctl from queen refused: not found: .*\{"spawn":"nope"\}/);
  });

  test("stat prints key=value metadata", async () => {
    const r = await remote(["stat", "/proc/boot"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^name=boot$/m);
    expect(r.stdout).toMatch(/^mode=-r--r--r--$/m);
    expect(r.stdout).toMatch(/^qid\.path=\d+$/m);
    const log = await remote(["stat", "/log/queen.log"]);
    expect(log.stdout).toMatch(/^mode=a/m); // append-only
    expect(Number(/^length=(\d+)$/m.exec(log.stdout)?.[1])).toBeGreaterThan(0);
  });

  test("ls -l shows modes and sizes", async () => {
    const r = await remote(["ls", "-l", "/proc"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^-r--r--r-- +\d+ \S+ boot$/m);
    expect(r.stdout).toMatch(/^dr-xr-xr-x +\d+ \S+ lifecycle\/$/m);
  });

  test("write sends one command to /queen/lifecycle/ctl", async () => {
    const r = await remote(["write", "/queen/lifecycle/ctl", "resume"]);
    expect(r.exitCode).toBe(0);
    const log = await remote(["cat", "/log/queen.log"]);
    expect(log.stdout).toMatch(/lifecycle from queen: resume/);
  });

  test("tail -n prints the last lines", async () => {
    const r = await remote(["tail", "-n", "2", "/log/queen.log"]);
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    const all = (await remote(["cat", "/log/queen.log"])).stdout.trimEnd().split("\n");
    // The cat itself attached after the tail, so the tail's lines sit just before the end.
    expect(all).toEqual(expect.arrayContaining(lines));
  });

  test("tail -f follows a line appended later, until its PID is killed", async () => {
    const base = { ...process.env };
    delete base.COHESIX_ADDR;
    delete base.COHESIX_KEY;
    const follower = execa("node", [BIN, "tail", "-f", "-n", "1", "/log/queen.log", "--addr", served.addr, "--key", scratch.queenKey], {
      cwd: ROOT,
      env: { ...base, ...scratch.env },
      extendEnv: false,
      reject: false,
    });
    let seen = "";
    follower.stdout!.on("data", (chunk: Buffer) => (seen += chunk.toString("utf8")));
    try {
      // The follower's own attach is logged once it is connected.
      await waitFor(() => /attach queen queen/.test(seen), 10_000);
      const marker = `follow-${process.pid}-${Date.now()}`;
      const w = await remote(["ctl", `{"budget":{"ops":${(Date.now() % 1000) + 1}}}`]);
      expect(w.exitCode).toBe(0);
      const bad = await remote(["write", "/queen/lifecycle/ctl", marker]);
      expect(bad.exitCode).toBe(1);
      await waitFor(() => seen.includes(marker), 10_000);
      expect(seen).toMatch(/ctl from queen: \{"budget":\{"ops":\d+\}\}/);
    } finally {
      process.kill(follower.pid!, "SIGTERM");
    }
    const result = await follower;
    expect(result.signal).toBe("SIGTERM");
  });

  test("COHESIX_ADDR and COHESIX_KEY stand in for --addr and --key", async () => {
    const r = await cohesix(["cat", "/proc/lifecycle/state"], { env: { ...scratch.env, COHESIX_ADDR: served.addr, COHESIX_KEY: scratch.queenKey } });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe("ONLINE");
  });

  test("a queen ticket signed by another key is refused with permission:", async () => {
    const other = await makeScratch();
    try {
      const r = await cohesix(["ls", "/", "--addr", served.addr, "--key", other.queenKey], { env: scratch.env });
      expect(r.exitCode).toBe(1);
      expectOneErrorLine(r.stderr, "permission");
    } finally {
      await other.remove();
    }
  });
});

describe("9P errors exit 1 with one class: message line", () => {
  test("cat of a missing file says not found:", async () => {
    const r = await remote(["cat", "/proc/nope"]);
    expect(r.exitCode).toBe(1);
    expectOneErrorLine(r.stderr, "not found");
    expect(r.stdout).toBe("");
  });

  test("write to /proc/boot says permission:", async () => {
    const r = await remote(["write", "/proc/boot", "hello"]);
    expect(r.exitCode).toBe(1);
    expectOneErrorLine(r.stderr, "permission");
  });

  test("cat of a directory says invalid: rather than printing stat records", async () => {
    const r = await remote(["cat", "/proc"]);
    expect(r.exitCode).toBe(1);
    expectOneErrorLine(r.stderr, "invalid");
    expect(r.stdout).toBe("");
  });

  test("the 9P2000.L dialect gives the same classes", async () => {
    const missing = await remote(["cat", "/proc/nope", "--dialect", "9P2000.L"]);
    expect(missing.exitCode).toBe(1);
    expectOneErrorLine(missing.stderr, "not found");
    const denied = await remote(["write", "/proc/boot", "x", "--dialect", "9P2000.L"]);
    expect(denied.exitCode).toBe(1);
    expectOneErrorLine(denied.stderr, "permission");
  });

  test("an address where nobody listens fails with exit 1, not a hang", async () => {
    const r = await cohesix(["ls", "/", "--addr", "tcp!127.0.0.1!1", "--key", scratch.queenKey], { env: scratch.env });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
  });
});

describe("usage errors exit 2 with the usage", () => {
  test("an unknown command", async () => {
    const r = await cohesix(["frobnicate"], { env: scratch.env });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/unknown command "frobnicate"/);
    expect(r.stderr).toMatch(/usage: cohesix COMMAND/);
  });

  test("no command at all", async () => {
    const r = await cohesix([], { env: scratch.env });
    expect(r.exitCode).toBe(2);
    expect(r.stdout + r.stderr).toMatch(/usage: cohesix/);
  });

  test("a remote command without --addr or COHESIX_ADDR", async () => {
    const r = await cohesix(["ls", "/", "--key", scratch.queenKey], { env: scratch.env });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--addr is required/);
    expect(r.stderr).toMatch(/usage: cohesix ls/);
  });

  test("an unknown option", async () => {
    const r = await remote(["ls", "--bogus", "/"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/usage: cohesix ls/);
  });

  test("a malformed --addr", async () => {
    const r = await cohesix(["ls", "/", "--addr", "nowhere", "--key", scratch.queenKey], { env: scratch.env });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/usage: cohesix ls/);
  });

  test("a missing argument and a relative path", async () => {
    const w = await remote(["write", "/queen/ctl"]);
    expect(w.exitCode).toBe(2);
    const rel = await remote(["cat", "proc/boot"]);
    expect(rel.exitCode).toBe(2);
    expect(rel.stderr).toMatch(/must be absolute/);
  });
});

describe("cohesix keygen and ticket", () => {
  test("keygen writes queen.key with mode 0600 and queen.pub", async () => {
    const key = await stat(scratch.queenKey);
    expect(key.mode & 0o777).toBe(0o600);
    expect(existsSync(scratch.queenPub)).toBe(true);
    expect((await readFile(scratch.queenPub, "utf8")).length).toBeGreaterThan(0);
  });

  test("keygen refuses to overwrite an existing key", async () => {
    const before = await readFile(scratch.queenKey, "utf8");
    const r = await cohesix(["keygen", "--out", scratch.keyDir], { env: scratch.env });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/exists/);
    expect(await readFile(scratch.queenKey, "utf8")).toBe(before);
  });

  test("keygen without --out writes under XDG_CONFIG_HOME", async () => {
    const r = await cohesix(["keygen"], { env: scratch.env });
    expect(r.exitCode).toBe(0);
    expect(existsSync(join(scratch.env.XDG_CONFIG_HOME!, "cohesix", "queen.key"))).toBe(true);
  });

  test("ticket --role queen prints one text-safe ticket under 512 bytes", async () => {
    const r = await cohesix(["ticket", "--role", "queen", "--key", scratch.queenKey], { env: scratch.env });
    expect(r.exitCode).toBe(0);
    const ticket = r.stdout.trimEnd();
    expect(ticket.split("\n")).toHaveLength(1);
    expect(Buffer.byteLength(ticket)).toBeLessThan(512);
    expect(ticket).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  });

  test("ticket without --role is a usage error", async () => {
    const r = await cohesix(["ticket", "--key", scratch.queenKey], { env: scratch.env });
    expect(r.exitCode).toBe(2);
  });
});

async function waitFor(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(50);
  }
}
