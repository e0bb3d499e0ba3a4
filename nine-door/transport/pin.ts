/**
 * Certificate pinning: SHA-256 fingerprints in the form `openssl x509
 * -fingerprint -sha256` and Node's `fingerprint256` print (`AB:CD:…`).
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import { InvalidError } from "../errors.ts";

/**
 * Normalises a SHA-256 fingerprint to upper-case, colon-separated hex.
 * Accepts colons or none, any case, and the `sha256:` prefix that
 * `/proc/boot` shows (`tls_fingerprint=sha256:…`).
 *
 * @throws {InvalidError} when it is not 32 bytes of hex.
 *
 * @example
 * ```ts
 * normalizeFingerprint("ab12…"); // "AB:12:…"
 * ```
 */
export function normalizeFingerprint(pin: string): string {
  const hex = pin.trim().replace(/^sha256:/i, "").replaceAll(":", "").toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) {
    throw new InvalidError(
      `TLS pin ${JSON.stringify(pin)}: expected a SHA-256 fingerprint, 64 hex digits with or without colons`,
    );
  }
  return hex.match(/../g)!.join(":");
}

/**
 * The SHA-256 fingerprint of a PEM certificate (the first one, if the PEM
 * holds a chain), as `AB:CD:…` — the value to pass as `pin` when dialling.
 *
 * @throws {InvalidError} when the text is not a PEM certificate.
 *
 * @example
 * ```ts
 * const { cert } = await makeSelfSignedCert({ commonName: "gpu-bridge" });
 * const pin = certificateFingerprint(cert); // "3F:A0:…"
 * ```
 */
export function certificateFingerprint(pem: string): string {
  try {
    return new X509Certificate(pem).fingerprint256;
  } catch (err) {
    const e = new InvalidError(`certificate: not a PEM X.509 certificate: ${err instanceof Error ? err.message : String(err)}`);
    e.cause = err;
    throw e;
  }
}
