/**
 * The CLI's `known_hosts`: appliance certificates pinned on first use, like
 * ssh's. One line per appliance, keyed by its dial string:
 *
 * ```text
 * tls!192.168.1.40!5640 sha256:9c1e… aud=3f9a0c1d22e4b871
 * ```
 *
 * The first TLS connection to an address records the certificate's
 * fingerprint and, for a Cohesix device certificate, the appliance's boot
 * key id (the audience its tickets must name); every later connection must
 * present the same certificate or is refused before anything is sent.
 * Lives in the config directory (`$XDG_CONFIG_HOME/cohesix/known_hosts`).
 * @module
 */
import { appendFile, mkdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { PermissionError, formatDialString, type DialAddress } from "../nine-door/index.ts";
import { certificateAudience, fingerprintOf } from "../root-task/index.ts";
import { configDir } from "./paths.ts";

/** One pinned appliance. */
export interface KnownHost {
  /** The canonical dial string, `tls!HOST!PORT`. */
  readonly dial: string;
  /** `sha256:` and 64 lower-case hex digits. */
  readonly fingerprint: string;
  /** The appliance's boot key id, when its certificate proves one. */
  readonly audience?: string;
}

/**
 * `$XDG_CONFIG_HOME/cohesix/known_hosts` (or `~/.config/cohesix/known_hosts`).
 *
 * @example
 * ```ts
 * knownHostsPath({ XDG_CONFIG_HOME: "/tmp/cfg" }); // "/tmp/cfg/cohesix/known_hosts"
 * ```
 */
export function knownHostsPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), "known_hosts");
}

const LINE = /^(tls!\S+) (sha256:[0-9a-f]{64})(?: aud=([0-9a-f]{16}))?$/;

/**
 * Reads a known_hosts file: the first line for each dial string wins;
 * blank lines, `#` comments and lines in no known form are skipped. A
 * missing file is empty.
 *
 * @example
 * ```ts
 * const hosts = await readKnownHosts(knownHostsPath());
 * hosts.get("tls!10.0.0.7!5640")?.fingerprint;
 * ```
 */
export async function readKnownHosts(path: string): Promise<Map<string, KnownHost>> {
  const text = await readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return "";
    throw err;
  });
  const hosts = new Map<string, KnownHost>();
  for (const line of text.split("\n")) {
    const m = LINE.exec(line.trim());
    if (!m || hosts.has(m[1]!)) continue;
    hosts.set(m[1]!, { dial: m[1]!, fingerprint: m[2]!, ...(m[3] !== undefined ? { audience: m[3] } : {}) });
  }
  return hosts;
}

/**
 * Appends one pinned appliance to a known_hosts file, making its folder
 * (mode 0700) if needed.
 *
 * @example
 * ```ts
 * await rememberHost(knownHostsPath(), { dial: "tls!10.0.0.7!5640", fingerprint: "sha256:9c1e…", audience: "3f9a0c1d22e4b871" });
 * ```
 */
export async function rememberHost(path: string, host: KnownHost): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await appendFile(path, `${host.dial} ${host.fingerprint}${host.audience !== undefined ? ` aud=${host.audience}` : ""}\n`, { mode: 0o644 });
}

/** What {@link trustCertificate} hands the dialler, and what it learned. */
export interface CertificateTrust {
  /** Pass as `checkCertificate` when dialling: throws on a changed certificate. */
  readonly check: (der: Uint8Array) => void;
  /** The audience the certificate proved, once `check` has run (undefined for a certificate that is not a Cohesix device certificate). */
  audience(): string | undefined;
  /** Records the certificate on first use; says so on `say`. Nothing to do when it was already pinned or `--pin` was given. */
  remember(say: (line: string) => void): Promise<void>;
}

/**
 * Trust for one TLS address: the pinned certificate from known_hosts, or
 * trust on first use. With `pin` (`--pin`, `COHESIX_PIN`) the dialler
 * checks the fingerprint and known_hosts is neither read for it nor written.
 *
 * @example
 * ```ts
 * const trust = await trustCertificate(addr, { path: knownHostsPath(env) });
 * const conn = await dial(addr, { checkCertificate: trust.check });
 * await trust.remember((line) => process.stderr.write(line));
 * const aud = trust.audience();
 * ```
 */
export async function trustCertificate(address: DialAddress, options: { path: string; pin?: string }): Promise<CertificateTrust> {
  const dial = formatDialString(address);
  const pinned = options.pin === undefined ? (await readKnownHosts(options.path)).get(dial) : undefined;
  let seen: KnownHost | undefined;
  return {
    check(der) {
      const fingerprint = fingerprintOf(der);
      if (pinned !== undefined && pinned.fingerprint !== fingerprint) {
        throw new PermissionError(
          `the appliance at ${dial} presents a different certificate (${fingerprint}, pinned ${pinned.fingerprint}); if it was reflashed, remove its line from ${options.path}`,
        );
      }
      const audience = certificateAudience(der);
      seen = { dial, fingerprint, ...(audience !== undefined ? { audience } : {}) };
    },
    audience: () => seen?.audience,
    async remember(say) {
      if (pinned !== undefined || options.pin !== undefined || seen === undefined) return;
      await rememberHost(options.path, seen);
      say(`pinned ${dial} ${seen.fingerprint}${seen.audience !== undefined ? ` (appliance ${seen.audience})` : ""} in ${options.path}\n`);
    },
  };
}
