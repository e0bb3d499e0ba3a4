/**
 * Interop with a stock 9P2000.L client nobody here wrote: diod's `diodls`
 * and `diodcat` (Debian package `diod`, installed by scripts/setup.sh).
 * They attach with the ticket in aname (`-a TICKET`), as the Linux v9fs
 * client does with `-o aname=TICKET`.
 *
 * diod's tools cannot write, so the stock-client append (a write to
 * /queen/ctl or a telemetry file) is covered once the guest kernel's v9fs
 * mounts the appliance (the QEMU end-to-end suite), not here.
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { generateKeyPair, mintTicket, serveAppliance, writeKeyPair, type RunningAppliance } from "../../root-task/index.ts";

const DIODLS = "/usr/sbin/diodls";
const DIODCAT = "/usr/sbin/diodcat";

let dir: string;
let running: RunningAppliance;
let server: string;
let ticket: string;

beforeAll(async () => {
  for (const tool of [DIODLS, DIODCAT]) {
    if (!existsSync(tool)) throw new Error(`${tool} is missing: run scripts/setup.sh (it installs Debian's diod package)`);
  }
  dir = await mkdtemp(join(tmpdir(), "cohesix-diod-"));
  const queen = await writeKeyPair(join(dir, "keys"), { name: "queen" });
  running = await serveAppliance({ board: "host", listen: "127.0.0.1:0", stateDir: join(dir, "state"), queenPub: queen.publicPath });
  const addr = running.listener.address;
  if (addr.kind === "unix") throw new Error("expected a TCP listener");
  server = `127.0.0.1:${addr.port}`;
  ticket = mintTicket({ role: "queen", sub: "queen" }, queen.privateKey);
});

afterAll(async () => {
  await running?.stop("test done");
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs a diod tool against the appliance with `aname`; never throws on exit status. */
function diod(tool: string, aname: string, args: readonly string[]) {
  return execa(tool, ["-s", server, "-a", aname, "-t", "10", ...args], { reject: false, timeout: 20_000 });
}

describe("diod's stock 9P2000.L tools against the host appliance", () => {
  test("diodls / lists the five top-level names", async () => {
    const r = await diod(DIODLS, ticket, ["/"]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    expect(r.stdout.split("\n").sort()).toEqual(["gpu", "log", "proc", "queen", "worker"]);
  });

  test("diodls -l /proc shows stat information for each file", async () => {
    const r = await diod(DIODLS, ticket, ["-l", "/proc"]);
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines.map((l) => l.split(/\s+/).pop()).sort()).toEqual(["boot", "lifecycle", "mem", "sessions", "state", "workers"]);
    expect(lines.find((l) => l.endsWith(" boot"))).toMatch(/^-r--r--r--/);
    expect(lines.find((l) => l.endsWith(" lifecycle"))).toMatch(/^dr-xr-xr-x/);
  });

  test("diodls -l on the append-only log stats a single file", async () => {
    const r = await diod(DIODLS, ticket, ["-l", "/log/queen.log"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^-r--r--r--.*\/log\/queen\.log$/);
  });

  test("diodcat /proc/boot reads the boot banner", async () => {
    const r = await diod(DIODCAT, ticket, ["/proc/boot"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^cohesix \d+\.\d+\.\d+\nboard=host\n/);
  });

  test("a forged ticket is refused with Permission denied, and the refusal is logged", async () => {
    // A queen ticket signed by a key the appliance does not trust.
    const stranger = await generateKeyPair();
    const forged = mintTicket({ role: "queen", sub: "queen" }, stranger.privateKey);
    const r = await diod(DIODLS, forged, ["/"]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied/);
    expect(r.stdout).toBe("");
    const log = await diod(DIODCAT, ticket, ["/log/queen.log"]);
    expect(log.stdout).toMatch(/refused peer tcp!127\.0\.0\.1!\d+ Tattach: permission: ticket signature does not verify/);
  });

  test("a garbage ticket is refused with Permission denied, and the refusal is logged", async () => {
    const r = await diod(DIODCAT, "not-a-ticket", ["/proc/boot"]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied/);
    expect(r.stdout).toBe("");
    const log = await diod(DIODCAT, ticket, ["/log/queen.log"]);
    expect(log.stdout).toMatch(/refused peer tcp!127\.0\.0\.1!\d+ Tattach: permission: malformed ticket/);
  });
});
