/**
 * Errors that say what to do, through the real `cohesix` program: keys
 * (missing, not a key, a public key, the wrong queen key), the clock behind
 * an expired ticket, TLS dialled to a plain port, a listen address in use,
 * `ticket` for a worker role, `vm restore` of a snapshot that is not there,
 * and `cohesix test` outside a project. Each is one line.
 */
import { execa } from "execa";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { keyId, readPrivateKey, publicKeyOf, serveAppliance, type RunningAppliance } from "../../root-task/index.ts";
import { signalPid } from "./appliance-helpers.ts";
import { BIN, cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

let scratch: Scratch;
let served: Served;

beforeAll(async () => {
  scratch = await makeScratch();
  served = await serve(scratch);
});
afterAll(async () => {
  await served?.stop();
  await scratch?.remove();
});

/** The one line on stderr, failing when there are more. */
function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split("\n");
  expect(lines, stderr).toHaveLength(1);
  return lines[0]!;
}

describe("queen key files", () => {
  test("--key DIR/nosuch.key says the file does not exist and how to name or make the right one, not keygen --out DIR", async () => {
    const missing = join(scratch.keyDir, "nosuch.key");
    const r = await cohesix(["ls", "/", "--addr", served.addr, "--key", missing], { env: scratch.env });
    expect(r.exitCode).toBe(1);
    const line = oneLine(r.stderr);
    expect(line).toMatch(new RegExp(`^not found: queen key ${missing} does not exist: give the queen's private key with --key FILE`));
    expect(line).toContain("cohesix keygen --out DIR` makes DIR/queen.key");
    expect(line).not.toContain(`keygen --out ${scratch.keyDir}`);
  });

  test("--key /etc/hostname is not a key, whatever its mode", async () => {
    const notKey = join(scratch.dir, "hostname");
    await writeFile(notKey, "box\n", { mode: 0o644 });
    const r = await cohesix(["ls", "/", "--addr", served.addr, "--key", notKey], { env: scratch.env });
    expect(r.exitCode).toBe(1);
    const line = oneLine(r.stderr);
    expect(line).toBe(`invalid: ${notKey} is not a key: a queen key is one line \`cohesix-ed25519-private …\` (cohesix keygen makes one)`);
    expect(line).not.toMatch(/mode|chmod/);
  });

  test("--key FILE.pub names the private half", async () => {
    const r = await cohesix(["ls", "/", "--addr", served.addr, "--key", scratch.queenPub], { env: scratch.env });
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toBe(`invalid: ${scratch.queenPub} is a public key: --key takes the private half (${scratch.queenKey})`);
  });

  test("a wrong queen key names the key the appliance trusts, the one this host used, --key and keygen", async () => {
    const other = await makeScratch();
    try {
      const r = await cohesix(["ls", "/", "--addr", served.addr, "--key", other.queenKey], { env: scratch.env });
      expect(r.exitCode).toBe(1);
      const line = oneLine(r.stderr);
      const trusted = keyId(publicKeyOf(await readPrivateKey(scratch.queenKey)));
      const used = keyId(publicKeyOf(await readPrivateKey(other.queenKey)));
      expect(line).toMatch(/^permission: ticket signature does not verify: /);
      expect(line).toContain(`this appliance trusts queen key ${trusted}`);
      expect(line).toContain(`this host signed with queen key ${used} (${other.queenKey})`);
      expect(line).toContain("--key FILE");
      expect(line).toContain("cohesix keygen");
    } finally {
      await other.remove();
    }
  });
});

describe("the clock behind an expired ticket", () => {
  let running: RunningAppliance | undefined;
  let dir = "";
  afterAll(async () => {
    await running?.stop("test done");
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("an appliance whose clock reads 2030 refuses with both clocks and how to set the guest's", async () => {
    dir = await mkdtemp(join(tmpdir(), "cohesix-clock-"));
    const future = Date.parse("2030-01-01T00:00:00Z");
    // The appliance's clock as a guest booted with --rtc-base 2030-01-01 would have it.
    running = await serveAppliance({
      board: "host",
      listen: "127.0.0.1:0",
      stateDir: join(dir, "state"),
      queenPub: scratch.queenPub,
      clock: { now: () => future + (Date.now() % 1000), sync: async () => undefined },
    });
    const r = await cohesix(["ls", "/", "--addr", running.dialString, "--key", scratch.queenKey], { env: scratch.env });
    expect(r.exitCode).toBe(1);
    const line = oneLine(r.stderr);
    expect(line).toMatch(/^permission: ticket expired at \S+: the appliance's clock reads 2030-01-01T00:00:0\d\.\d{3}Z; this host's clock reads 20\d\d-/);
    expect(line).toContain("--rtc-base utc");
  });
});

describe("dialling and listening", () => {
  test("TLS to a plain-TCP appliance is one io: line, not OpenSSL's text", async () => {
    const tls = served.addr.replace(/^tcp!/, "tls!");
    const r = await cohesix(["ls", "/", "--addr", tls, "--key", scratch.queenKey], { env: scratch.env });
    expect(r.exitCode).toBe(1);
    expect(oneLine(r.stderr)).toBe(`io: ${tls} does not speak TLS (is it a plain-TCP appliance? dial ${served.addr} and drop --pin)`);
  });

  test("gpu-bridge on a port in use says so in one io: line, and never that it is serving", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const r = await cohesix(["gpu-bridge", "--listen", `127.0.0.1:${port}`, "--backend", "sim"], { env: scratch.env, timeoutMs: 30_000 });
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).not.toMatch(/serving/);
      const errors = r.stderr.split("\n").filter((l) => !l.startsWith("gpu-bridge: "));
      expect(errors.filter(Boolean)).toEqual([`io: 127.0.0.1:${port} is in use: stop what listens there or choose another --listen (port 0 picks a free one)`]);
    } finally {
      taken.close();
    }
  });

  test("gpu-bridge says it is serving once it listens", async () => {
    const child = execa("node", [BIN, "gpu-bridge", "--listen", "127.0.0.1:0", "--backend", "sim"], { env: { ...process.env, ...scratch.env }, reject: false });
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    try {
      const ready = await new Promise<string>((resolve, reject) => {
        child.stdout!.on("data", (d: Buffer) => {
          const m = /READY (\S+)/.exec(d.toString());
          if (m) resolve(m[1]!);
        });
        void child.then(() => reject(new Error(`gpu-bridge exited: ${err}`)));
      });
      expect(err).toMatch(new RegExp(`gpu-bridge: serving GPU-0 .* on ${ready.replace(/!/g, "!")}`));
    } finally {
      signalPid(child.pid!, "SIGTERM");
      await child;
    }
  });
});

describe("usage that names what is needed", () => {
  test("ticket --role worker-heartbeat without --subject asks for --subject with an example", async () => {
    const r = await cohesix(["ticket", "--role", "worker-heartbeat", "--key", scratch.queenKey], { env: scratch.env });
    expect(r.exitCode).toBe(2);
    expect(oneLine(r.stderr).startsWith("cohesix ticket: --subject is required for role worker-heartbeat: whom the ticket is for, e.g. --subject worker-1")).toBe(true);
    const help = await cohesix(["ticket", "--help"], { env: scratch.env });
    expect(help.stdout).toMatch(/--subject NAME/);
  });

  test("cohesix test outside a project refuses, exit 2, saying it needs a project, and runs no test", async () => {
    const empty = join(scratch.dir, "not-a-project");
    await mkdir(join(empty, "test"), { recursive: true });
    await writeFile(join(empty, "test", "x.test.ts"), 'throw new Error("must not run");\n');
    const r = await execa("node", [BIN, "test"], { cwd: empty, reject: false, timeout: 30_000, env: { ...process.env, ...scratch.env } });
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe("");
    expect(
      oneLine(r.stderr).startsWith(
        `cohesix test: test needs an appliance project: no cohesix.config.json in ${empty} (run it in a project folder, give --project DIR, or make one with \`cohesix new DIR\`)`,
      ),
    ).toBe(true);
    expect(r.stderr).not.toMatch(/must not run|Vitest/);
  });
});

describe("VM snapshots", () => {
  test("vm restore of a missing snapshot names the ones there before touching the VM, and vm snapshots lists them", async () => {
    const base = join(scratch.dir, "snapshots", ".cohesix");
    const disk = join(base, "vm", "aarch64-virt", "state.qcow2");
    await mkdir(join(base, "vm", "aarch64-virt"), { recursive: true });
    await execa("qemu-img", ["create", "-q", "-f", "qcow2", disk, "16M"]);
    for (const name of ["a", "b"]) await execa("qemu-img", ["snapshot", "-c", name, disk]);
    // A recorded, running VM (a stand-in process, stopped by PID): the refusal comes before any QMP.
    const standIn = execa("node", ["-e", "setInterval(() => {}, 1000)"], { reject: false });
    try {
      const run = join(base, "run", "aarch64-virt");
      await mkdir(run, { recursive: true });
      await writeFile(join(run, "vm.json"), JSON.stringify({ board: "aarch64-virt", pid: standIn.pid, port: 1, dialString: "tcp!127.0.0.1!1", startedAt: "" }));
      const r = await cohesix(["vm", "restore", "nosuch", "--dir", base], { env: scratch.env });
      expect(r.exitCode).toBe(1);
      expect(oneLine(r.stderr)).toBe("not found: snapshot nosuch; snapshots: a, b");
      const list = await cohesix(["vm", "snapshots", "--dir", base], { env: scratch.env });
      expect(list.exitCode, list.stderr).toBe(0);
      expect(list.stdout).toBe("a\nb");
    } finally {
      signalPid(standIn.pid!, "SIGKILL");
      await standIn;
    }
  });
});
