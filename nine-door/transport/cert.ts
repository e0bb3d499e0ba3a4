/**
 * Self-signed TLS certificates for appliances and tests, made with the
 * `openssl` command (node:crypto can make keys but not X.509 certificates).
 * Clients trust them by pinning the fingerprint, see `certificateFingerprint`.
 *
 * @module
 */

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidError, NineError, NotFoundError } from "../errors.ts";

/** Options of {@link makeSelfSignedCert}. */
export interface SelfSignedCertOptions {
  /** The subject CN, e.g. `gpu-bridge` or `cohesix-appliance`. */
  commonName: string;
  /** Validity in days from now. Default 365. */
  days?: number;
  /**
   * subjectAltName entries (`DNS:localhost`, `IP:127.0.0.1`). Default: the
   * common name, as `IP:` if it is an address, else `DNS:`.
   */
  altNames?: string[];
  /** The openssl program to run. Default `openssl` from PATH. */
  openssl?: string;
}

/** A PEM private key (PKCS#8, EC P-256) and its self-signed certificate. */
export interface SelfSignedCert {
  key: string;
  cert: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9 ._*-]{0,63}$/;
const ALT_NAME = /^(DNS:[A-Za-z0-9*._-]+|IP:[0-9A-Fa-f.:]+)$/;

/**
 * Makes an EC P-256 key and a self-signed certificate for it.
 *
 * @throws {InvalidError} a common name, alt name or day count openssl would choke on.
 * @throws {NotFoundError} `openssl` is not installed: `apt-get install openssl`.
 * @throws {NineError} class `io` if openssl fails, with its error output.
 *
 * @example
 * ```ts
 * const { key, cert } = await makeSelfSignedCert({ commonName: "gpu-bridge", days: 30 });
 * const listener = await listen("tls!0.0.0.0!5641", serve, { tls: { key, cert } });
 * console.log(certificateFingerprint(cert)); // the pin to give clients
 * ```
 */
export async function makeSelfSignedCert(options: SelfSignedCertOptions): Promise<SelfSignedCert> {
  const what = "make self-signed certificate";
  const { commonName } = options;
  const days = options.days ?? 365;
  if (!NAME.test(commonName)) {
    throw new InvalidError(
      `${what}: common name ${JSON.stringify(commonName)}: use 1-64 letters, digits, spaces, '.', '_', '-' or '*'`,
    );
  }
  if (!Number.isInteger(days) || days < 1 || days > 36500) {
    throw new InvalidError(`${what}: days must be a whole number 1-36500, got ${String(options.days)}`);
  }
  const altNames = options.altNames ?? [isIP(commonName) !== 0 ? `IP:${commonName}` : `DNS:${commonName}`];
  for (const alt of altNames) {
    if (!ALT_NAME.test(alt)) {
      throw new InvalidError(`${what}: alt name ${JSON.stringify(alt)}: expected DNS:NAME or IP:ADDRESS`);
    }
  }
  const dir = await mkdtemp(join(tmpdir(), "cohesix-cert-"));
  try {
    const keyFile = join(dir, "key.pem");
    const certFile = join(dir, "cert.pem");
    const args = [
      "req", "-x509", "-new", "-nodes",
      "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
      "-keyout", keyFile, "-out", certFile,
      "-days", String(days), "-subj", `/CN=${commonName}`,
      "-addext", "basicConstraints=critical,CA:FALSE",
      "-addext", "keyUsage=critical,digitalSignature",
      "-addext", "extendedKeyUsage=serverAuth,clientAuth",
    ];
    if (altNames.length > 0) args.push("-addext", `subjectAltName=${altNames.join(",")}`);
    const program = options.openssl ?? "openssl";
    // Loaded here, not at the top: clients that never make a certificate (cohesix ls) don't pay for execa.
    const { execa } = await import("execa");
    const result = await execa(program, args, { reject: false, stdin: "ignore", timeout: 30_000 });
    if (result.failed) {
      if (result.code === "ENOENT") {
        throw new NotFoundError(
          `${what}: the ${program} command is not installed; install it with \`apt-get install openssl\``,
        );
      }
      const detail = (result.stderr || result.shortMessage || "no error output").trim().split("\n").slice(-3).join("; ");
      throw new NineError("io", `${what}: ${program} failed: ${detail}`);
    }
    const [key, cert] = await Promise.all([readFile(keyFile, "utf8"), readFile(certFile, "utf8")]);
    return { key, cert };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
