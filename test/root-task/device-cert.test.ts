/**
 * The device certificate: made at first boot on the state disk, reused
 * after, issued by the boot key so that it proves the appliance's boot key
 * id (the audience of its tickets) to whoever pins it.
 */
import { X509Certificate } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { certificateFingerprint, dial, listen, makeSelfSignedCert } from "../../nine-door/index.ts";
import {
  DEVICE_CERT_FILE,
  DEVICE_KEY_FILE,
  certificateAudience,
  fingerprintOf,
  generateKeyPair,
  keyId,
  loadDeviceCert,
  makeDeviceCert,
  type KeyPair,
} from "../../root-task/index.ts";

let dir: string;
let boot: KeyPair;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-device-cert-"));
  boot = await generateKeyPair();
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("loadDeviceCert", () => {
  test("makes the key (0600) and certificate on first boot and loads the same pair on the next", async () => {
    const state = join(dir, "reuse");
    await mkdir(state);
    const first = await loadDeviceCert(state, boot.privateKey);
    expect(first.created).toBe(true);
    expect(first.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect((await stat(join(state, DEVICE_KEY_FILE))).mode & 0o777).toBe(0o600);
    const again = await loadDeviceCert(state, boot.privateKey);
    expect(again.created).toBe(false);
    expect(again.fingerprint).toBe(first.fingerprint);
    expect(again.cert).toBe(await readFile(join(state, DEVICE_CERT_FILE), "utf8"));
  });

  test("makes a new pair when the certificate on disk was issued by another boot key", async () => {
    const state = join(dir, "other");
    await mkdir(state);
    const other = await generateKeyPair();
    const old = await loadDeviceCert(state, other.privateKey);
    const now = await loadDeviceCert(state, boot.privateKey);
    expect(now.created).toBe(true);
    expect(now.fingerprint).not.toBe(old.fingerprint);
    expect(certificateAudience(now.cert)).toBe(keyId(boot.publicKey));
  });
});

describe("certificateAudience", () => {
  test("a device certificate proves its boot key id, in PEM and in DER", () => {
    const { cert } = makeDeviceCert(boot.privateKey);
    expect(certificateAudience(cert)).toBe(keyId(boot.publicKey));
    expect(certificateAudience(new Uint8Array(new X509Certificate(cert).raw))).toBe(keyId(boot.publicKey));
    expect(fingerprintOf(cert)).toBe(`sha256:${certificateFingerprint(cert).replaceAll(":", "").toLowerCase()}`);
  });

  test("a certificate naming a boot key that did not sign it proves nothing", async () => {
    const attacker = await generateKeyPair();
    const forged = makeDeviceCert(attacker.privateKey).cert;
    // Swap the issuer's boot key for the victim's, keeping the attacker's signature.
    const der = Buffer.from(new X509Certificate(forged).raw);
    const from = Buffer.from(attacker.publicKey).toString("base64url");
    const to = Buffer.from(boot.publicKey).toString("base64url");
    const at = der.indexOf(Buffer.from(from));
    expect(at).toBeGreaterThan(0);
    Buffer.from(to).copy(der, at);
    expect(certificateAudience(new Uint8Array(der))).toBeUndefined();
    expect(certificateAudience(forged)).toBe(keyId(attacker.publicKey));
  });

  test("an operator's own certificate and garbage prove no audience", async () => {
    const { cert } = await makeSelfSignedCert({ commonName: "cohesix-test" });
    expect(certificateAudience(cert)).toBeUndefined();
    expect(certificateAudience("not a certificate")).toBeUndefined();
  });

  test("NineDoor's TLS listener serves the Ed25519 device certificate and a pinned client dials it", async () => {
    const device = makeDeviceCert(boot.privateKey);
    const listener = await listen("tls!127.0.0.1!0", (conn) => conn.end("hello"), { tls: device });
    try {
      const conn = await dial(listener.dialString, { pin: fingerprintOf(device.cert) });
      const text = await new Promise<string>((resolve) => {
        let got = "";
        conn.on("data", (d: Buffer) => (got += d.toString()));
        conn.on("end", () => resolve(got));
      });
      expect(text).toBe("hello");
    } finally {
      await listener.close();
    }
  });
});
