/**
 * The appliance's device certificate: the TLS identity NineDoor presents off
 * loopback (DESIGN §12). Made at first boot, kept on the state disk beside
 * the boot key, reused on every later boot so its fingerprint stays put.
 *
 * - The TLS key is its own Ed25519 key (`tls.key`, mode 0600); the boot key
 *   never signs a TLS handshake, only tickets, commit-log keys and this
 *   certificate.
 * - The certificate (`tls.crt`) is issued by the boot key: its issuer name
 *   carries the boot public key (`CN=cohesix boot key <base64url>`) and its
 *   signature verifies under it. A client that pins the certificate thereby
 *   learns, with proof, which appliance it speaks to: the audience its
 *   tickets must name ({@link certificateAudience}). Someone in the middle
 *   cannot show another appliance's certificate (the handshake needs its
 *   TLS key) nor make one naming another appliance's boot key.
 * - Built with `node:crypto` alone (a DER writer of ~40 lines), because the
 *   guest has no `openssl` command. Validity runs from 2000 to 9999: clients
 *   pin the fingerprint and never check dates, and a first boot with a wrong
 *   clock must not make a certificate that expires or starts in the future.
 *
 * @module
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { InvalidError } from "../nine-door/index.ts";
import { decodeBase64url, keyId, publicKeyOf, sign } from "./keys.ts";

/**
 * The device's TLS key and certificate (PEM), and the certificate's
 * SHA-256 fingerprint as shown in `/proc/boot` (`sha256:<hex>`).
 *
 * @example
 * ```ts
 * const device: DeviceCert = await loadDeviceCert(stateDir, app.bootKey);
 * await listen("tls!0.0.0.0!5640", serve, { tls: { key: device.key, cert: device.cert } });
 * ```
 */
export interface DeviceCert {
  readonly key: string;
  readonly cert: string;
  /** `sha256:` and 64 lower-case hex digits. */
  readonly fingerprint: string;
  /** True when this boot made the pair (first boot, or the files were removed). */
  readonly created: boolean;
}

/** File names of the device pair in the state directory. */
export const DEVICE_KEY_FILE = "tls.key";
/** @see DEVICE_KEY_FILE */
export const DEVICE_CERT_FILE = "tls.crt";

const ISSUER_PREFIX = "cohesix boot key ";

/**
 * Loads the device certificate from the state directory, or makes it there
 * (key first, then certificate, each written to a temporary file, synced and
 * renamed) when either file is missing or the certificate was not issued by
 * this boot key.
 *
 * @throws {InvalidError} the boot key is not 32 bytes.
 *
 * @example
 * ```ts
 * const { fingerprint } = await loadDeviceCert("/var/lib/cohesix", bootKey);
 * console.log(`tls_fingerprint=${fingerprint}`);
 * ```
 */
export async function loadDeviceCert(stateDir: string, bootKey: Uint8Array): Promise<DeviceCert> {
  const keyPath = join(stateDir, DEVICE_KEY_FILE);
  const certPath = join(stateDir, DEVICE_CERT_FILE);
  const bootId = keyId(publicKeyOf(bootKey));
  const [key, cert] = await Promise.all([readFile(keyPath, "utf8").catch(() => undefined), readFile(certPath, "utf8").catch(() => undefined)]);
  if (key !== undefined && cert !== undefined && certificateAudience(cert) === bootId && certificateMatchesKey(cert, key)) {
    return { key, cert, fingerprint: fingerprintOf(cert), created: false };
  }
  const made = makeDeviceCert(bootKey);
  await writeSecret(keyPath, made.key, 0o600);
  await writeSecret(certPath, made.cert, 0o644);
  return { ...made, fingerprint: fingerprintOf(made.cert), created: true };
}

/**
 * Makes a fresh Ed25519 TLS key and a certificate for it issued by the boot
 * key. {@link loadDeviceCert} keeps them; tests call this directly.
 *
 * @example
 * ```ts
 * const { key, cert } = makeDeviceCert(boot.privateKey);
 * certificateAudience(cert) === keyId(boot.publicKey); // true
 * ```
 */
export function makeDeviceCert(bootKey: Uint8Array): { key: string; cert: string } {
  const bootPub = publicKeyOf(bootKey);
  const tlsPair = generateKeyPairSync("ed25519");
  const spki = tlsPair.publicKey.export({ format: "der", type: "spki" });
  const serial = Buffer.from(keyId(new Uint8Array(spki)).slice(0, 16), "hex");
  serial[0] = (serial[0]! & 0x7f) | 0x40; // a positive INTEGER, minimally encoded
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([2]))), // v3
    tlv(0x02, serial),
    ED25519,
    name(`${ISSUER_PREFIX}${Buffer.from(bootPub).toString("base64url")}`),
    seq(generalTime("20000101000000Z"), generalTime("99991231235959Z")),
    name(`cohesix ${keyId(bootPub)}`),
    spki,
    tlv(0xa3, seq(seq(oid("551d13"), tlv(0x01, Buffer.from([0xff])), tlv(0x04, seq())))), // basicConstraints critical, CA:FALSE
  );
  const signature = sign(tbs, bootKey);
  const der = seq(tbs, ED25519, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const cert = `-----BEGIN CERTIFICATE-----\n${der.toString("base64").match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE-----\n`;
  return { key: tlsPair.privateKey.export({ format: "pem", type: "pkcs8" }) as string, cert };
}

/**
 * The audience a certificate proves: the boot key id of the appliance that
 * issued it, when it is a Cohesix device certificate whose signature
 * verifies under the boot key its issuer names; undefined for any other
 * certificate (an operator's own, or a forgery). Takes PEM or DER.
 *
 * @example
 * ```ts
 * certificateAudience(device.cert); // "3f9a0c1d22e4b871"
 * certificateAudience(opensslMadeCert); // undefined
 * ```
 */
export function certificateAudience(cert: string | Uint8Array): string | undefined {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(typeof cert === "string" ? cert : Buffer.from(cert));
  } catch {
    return undefined;
  }
  const m = /^CN=cohesix boot key ([A-Za-z0-9_-]{43})$/.exec(x509.issuer.trim());
  const bootPub = m ? decodeBase64url(m[1]!) : undefined;
  if (bootPub === undefined || bootPub.length !== 32) return undefined;
  try {
    if (!x509.verify(publicKeyFrom(bootPub))) return undefined;
  } catch {
    return undefined;
  }
  return keyId(bootPub);
}

/**
 * A certificate's SHA-256 fingerprint as `/proc/boot` and `known_hosts`
 * show it: `sha256:` and 64 lower-case hex digits.
 *
 * @example
 * ```ts
 * fingerprintOf(device.cert); // "sha256:9c1e…"
 * ```
 */
export function fingerprintOf(cert: string | Uint8Array): string {
  const x509 = new X509Certificate(typeof cert === "string" ? cert : Buffer.from(cert));
  return `sha256:${x509.fingerprint256.replaceAll(":", "").toLowerCase()}`;
}

// ---------------------------------------------------------------------------

function publicKeyFrom(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw]), format: "der", type: "spki" });
}

function certificateMatchesKey(cert: string, key: string): boolean {
  try {
    return new X509Certificate(cert).checkPrivateKey(createPrivateKey(key));
  } catch {
    return false;
  }
}

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

function seq(...parts: Buffer[]): Buffer {
  return tlv(0x30, ...parts);
}

function oid(hex: string): Buffer {
  return tlv(0x06, Buffer.from(hex, "hex"));
}

/** AlgorithmIdentifier for Ed25519 (RFC 8410: no parameters). */
const ED25519 = seq(oid("2b6570"));

/** A Name of one RDN: commonName as UTF8String. */
function name(commonName: string): Buffer {
  if (Buffer.byteLength(commonName) > 64) throw new InvalidError(`certificate name ${JSON.stringify(commonName)} is longer than 64 bytes`);
  return seq(tlv(0x31, seq(oid("550403"), tlv(0x0c, Buffer.from(commonName, "utf8")))));
}

function generalTime(text: string): Buffer {
  return tlv(0x18, Buffer.from(text, "ascii"));
}

/** Temporary file with its final mode, synced, renamed into place. */
async function writeSecret(path: string, text: string, mode: number): Promise<void> {
  const temp = `${path}.tmp`;
  await rm(temp, { force: true });
  const handle = await open(temp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
  try {
    await handle.chmod(mode);
    await handle.writeFile(text, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
}
