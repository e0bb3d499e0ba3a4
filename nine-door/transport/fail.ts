/**
 * Internal: turns socket and TLS failures into the typed NineDoor errors, in
 * one place, keeping the system error as `cause`. Not re-exported.
 *
 * @module
 */

import { NineError, errorOfClass as typedErrorOfClass, type ErrorClass } from "../errors.ts";

/**
 * Builds an error of the given class (the matching subclass, so `instanceof`
 * works) with an optional cause.
 *
 * @example
 * ```ts
 * errorOfClass("closed", "dial tcp!h!1: connection refused", sysErr);
 * ```
 */
export function errorOfClass(cls: ErrorClass, detail: string, cause?: unknown): NineError {
  return typedErrorOfClass(cls, detail, cause === undefined ? undefined : { cause });
}

/**
 * The `code` of a system error (`ECONNREFUSED`…), if it has one.
 *
 * @example
 * ```ts
 * systemCode(Object.assign(new Error("x"), { code: "EPIPE" })); // "EPIPE"
 * ```
 */
export function systemCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  const code = (err as { code: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

const known: Record<string, [ErrorClass, string]> = {
  ECONNREFUSED: ["closed", "connection refused (ECONNREFUSED); is the server listening?"],
  ECONNRESET: ["closed", "connection reset by peer (ECONNRESET)"],
  EPIPE: ["closed", "connection closed by peer (EPIPE)"],
  ENOENT: ["not found", "no such file or directory (ENOENT)"],
  EACCES: ["permission", "permission denied (EACCES)"],
  EPERM: ["permission", "operation not permitted (EPERM)"],
  EADDRINUSE: ["busy", "address already in use (EADDRINUSE)"],
  EADDRNOTAVAIL: ["invalid", "address not available on this machine (EADDRNOTAVAIL)"],
  ENOTFOUND: ["not found", "host name not found (ENOTFOUND)"],
  EAI_AGAIN: ["io", "host name lookup failed temporarily (EAI_AGAIN)"],
  ETIMEDOUT: ["io", "timed out (ETIMEDOUT)"],
  EHOSTUNREACH: ["io", "host unreachable (EHOSTUNREACH)"],
  ENETUNREACH: ["io", "network unreachable (ENETUNREACH)"],
  ENOTDIR: ["not found", "a parent of the socket path is not a directory (ENOTDIR)"],
};

const untrusted = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** Failures worth another attempt while a peer is still coming up. */
const retryableCodes = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ENOENT", "ETIMEDOUT"]);
const retryable = new WeakSet<object>();

/**
 * Maps a socket/TLS failure to a typed error: `"<what>: <reason>"`, e.g.
 * `closed: dial tcp!127.0.0.1!5640: connection refused (ECONNREFUSED)…`.
 *
 * @example
 * ```ts
 * socket.once("error", (e) => reject(fromSystemError("dial tcp!h!564", e)));
 * ```
 */
export function fromSystemError(what: string, err: unknown): NineError {
  if (err instanceof NineError) return err;
  const code = systemCode(err);
  const message = err instanceof Error ? err.message : String(err);
  let out: NineError;
  if (code !== undefined && code in known) {
    const [cls, reason] = known[code] as [ErrorClass, string];
    out = errorOfClass(cls, `${what}: ${reason}`, err);
  } else if (code !== undefined && untrusted.has(code)) {
    out = errorOfClass(
      "permission",
      `${what}: TLS certificate not trusted: ${message} (${code}); pass \`pin\` with the certificate's SHA-256 fingerprint or \`ca\``,
      err,
    );
  } else {
    out = errorOfClass("io", `${what}: ${message}${code === undefined ? "" : ` (${code})`}`, err);
  }
  if (code !== undefined && retryableCodes.has(code)) retryable.add(out);
  return out;
}

/**
 * Marks an error as transient (the peer may come up later).
 *
 * @example
 * ```ts
 * throw markRetryable(new ClosedError("dial tcp!h!1: closed right after connecting"));
 * ```
 */
export function markRetryable<E extends object>(err: E): E {
  retryable.add(err);
  return err;
}

/**
 * Whether {@link fromSystemError} or {@link markRetryable} judged the error
 * transient.
 *
 * @example
 * ```ts
 * if (isRetryable(err)) await sleep(delay);
 * ```
 */
export function isRetryable(err: unknown): boolean {
  return typeof err === "object" && err !== null && retryable.has(err);
}
