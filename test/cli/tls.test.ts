/**
 * NineDoor over TLS from the command line: `serve --listen tls!…` with a
 * self-signed certificate, and remote commands that pin its fingerprint.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { certificateFingerprint, makeSelfSignedCert } from "../../nine-door/index.ts";
import { cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

let scratch: Scratch;
let served: Served;
let pin: string;

beforeAll(async () => {
  scratch = await makeScratch();
  const { key, cert } = await makeSelfSignedCert({ commonName: "cohesix-test" });
  await writeFile(join(scratch.dir, "tls.key"), key, { mode: 0o600 });
  await writeFile(join(scratch.dir, "tls.crt"), cert);
  pin = certificateFingerprint(cert);
  served = await serve(scratch, ["--listen", "tls!127.0.0.1!0", "--tls-key", join(scratch.dir, "tls.key"), "--tls-cert", join(scratch.dir, "tls.crt")]);
});

afterAll(async () => {
  await served?.stop();
  await scratch?.remove();
});

describe("cohesix over TLS", () => {
  it("serves on a tls! address and prints it in the READY line", () => {
    expect(served.addr).toMatch(/^tls!127\.0\.0\.1!\d+$/);
  });

  it("lists the root when the certificate's fingerprint is pinned", async () => {
    const r = await cohesix(["ls", "/", "--addr", served.addr, "--key", scratch.queenKey, "--pin", pin], { env: scratch.env });
    expect(r.stderr).toBe("");
    expect(r.stdout.split("\n")).toEqual(["gpu/", "log/", "proc/", "queen/", "worker/"]);
  });

  it("refuses a wrong pin with permission: and exit 1", async () => {
    const wrong = pin.replace(/^[0-9A-F]{2}/, (h) => (h === "00" ? "01" : "00"));
    const r = await cohesix(["ls", "/", "--addr", served.addr, "--key", scratch.queenKey, "--pin", wrong], { env: { ...scratch.env } });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^permission: .*fingerprint mismatch/);
  });

  it("takes the pin from COHESIX_PIN", async () => {
    const r = await cohesix(["cat", "/proc/lifecycle/state", "--addr", served.addr, "--key", scratch.queenKey], { env: { ...scratch.env, COHESIX_PIN: pin } });
    expect(r.stdout.trim()).toBe("ONLINE");
  });
});
