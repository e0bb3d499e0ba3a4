/**
 * End to end on the aarch64-virt board with NineDoor's TLS turned on
 * (`cohesix.tls=on` on the kernel command line, as a guest on a real
 * network would have it by default): the guest makes its device
 * certificate on the state disk at first boot and prints its fingerprint
 * on the console, `cohesix boot` hands out a `tls!` address, the CLI pins
 * the certificate and learns the audience, and a second boot from the
 * same state disk presents the same certificate.
 *
 * Needs qemu-system-aarch64 and the board's artefacts (scripts/setup.sh).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2e } from "./harness.ts";

const BOOT_MS = 300_000;
let e2e!: E2e;
let bootArgs: string[] = [];

async function boot(): Promise<void> {
  const r = await e2e.cohesix(["boot", ...bootArgs], { timeoutMs: BOOT_MS });
  if (r.exitCode !== 0) throw new Error(`cohesix boot failed (${r.exitCode}):\n${r.stderr}`);
  e2e.dial = r.stdout.split("\n")[0]!;
}

function consoleFingerprints(text: string): string[] {
  return [...text.matchAll(/^cohesix: nine-door tls=on certificate (sha256:[0-9a-f]{64})\s*$/gm)].map((m) => m[1]!);
}

describe("aarch64-virt guest with cohesix.tls=on (QEMU)", () => {
  beforeAll(async () => {
    e2e = await E2e.create("cohesix-e2e-tls-");
    bootArgs = ["--detach", "--port", "0", "--queen-pub", e2e.queenPub, "--append", "cohesix.tls=on"];
    await boot();
  }, BOOT_MS + 60_000);

  afterAll(async () => {
    if (e2e) await e2e.teardown();
  }, 120_000);

  it("cohesix boot hands out a tls! address, and the console shows the certificate before READY tls!…", async () => {
    expect(e2e.dial).toMatch(/^tls!127\.0\.0\.1!\d+$/);
    const text = await e2e.consoleText();
    expect(consoleFingerprints(text), text.slice(-3000)).toHaveLength(1);
    expect(text).toMatch(/^READY tls!10\.0\.2\.15!5640\s*$/m);
  });

  it("the CLI pins the guest's certificate with its boot key id, and /proc/boot shows the same fingerprint", async () => {
    const boot = await e2e.queen(["cat", "/proc/boot"]);
    expect(boot).toMatch(/^tls=on$/m);
    expect(boot).toMatch(/^tls_reason=setting on$/m);
    const fingerprint = /^tls_fingerprint=(sha256:[0-9a-f]{64})$/m.exec(boot)?.[1];
    const bootKey = /^boot_key=([0-9a-f]{16})$/m.exec(boot)?.[1];
    expect(consoleFingerprints(await e2e.consoleText())).toEqual([fingerprint]);
    const knownHosts = await readFile(join(e2e.env.XDG_CONFIG_HOME!, "cohesix", "known_hosts"), "utf8");
    expect(knownHosts).toContain(`${e2e.dial} ${fingerprint} aud=${bootKey}\n`);
  }, 120_000);

  it("a second boot from the same state disk presents the same certificate", async () => {
    const before = consoleFingerprints(await e2e.consoleText());
    const down = await e2e.cohesix(["down"], { timeoutMs: 120_000 });
    expect(down.exitCode, down.stderr).toBe(0);
    await boot();
    const after = consoleFingerprints(await e2e.consoleText());
    expect(after.at(-1)).toBe(before[0]);
    // The port is new, so the CLI pins this address afresh, to the same certificate.
    expect(await e2e.queen(["cat", "/proc/boot"])).toContain(`\ntls_fingerprint=${before[0]}\n`);
  }, BOOT_MS + 60_000);
});
