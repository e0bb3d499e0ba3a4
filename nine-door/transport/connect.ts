/**
 * Dialling: open a byte stream to a `tcp!`, `tls!` or `unix!` address, with a
 * connect timeout, cancellation, TLS certificate pinning, and a retrying
 * variant for peers that are still coming up (QEMU host forwards accept and
 * then close until the guest listens).
 *
 * @module
 */

import net from "node:net";
import { createRequire } from "node:module";
import type { Duplex } from "node:stream";
import type * as tls from "node:tls";
import { InvalidError, NineError, PermissionError } from "../errors.ts";
import { formatDialString, toDialAddress, type DialAddress } from "./dial.ts";
import { errorOfClass, fromSystemError, isRetryable, markRetryable } from "./fail.ts";
import { normalizeFingerprint } from "./pin.ts";

/** Options of {@link dial}. */
export interface DialOptions {
  /** Gives up on the connect (and TLS handshake) after this long; 0 waits forever. Default 10 000. */
  timeoutMs?: number;
  /** Cancels the dial; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * TLS only: the server certificate's SHA-256 fingerprint (`AB:CD:…` or
   * plain hex, any case). With a pin the chain is not checked against CAs —
   * appliances use self-signed certificates — but the fingerprint must match.
   */
  pin?: string;
  /**
   * TLS only: called with the server's certificate (DER) once the handshake
   * is done, before the stream is returned; what it throws refuses the
   * connection. With it the chain is not checked against CAs: the callback
   * decides (the CLI's `known_hosts`, trust on first use).
   */
  checkCertificate?: (der: Uint8Array) => void;
  /** TLS only, without `pin`: CA certificates (PEM) to trust instead of the system's. */
  ca?: string | string[];
  /** TLS only: the SNI and certificate name to expect; defaults to the host when it is a name. */
  servername?: string;
  /**
   * TCP and Unix only: read into memory the caller gives instead of emitting
   * `data` events (`net.Socket`'s `onread`). The client uses it to receive
   * large replies in place, without a fresh 64 KiB buffer per read.
   */
  onread?: net.OnReadOpts;
}

/** Options of {@link dialWithRetry}: those of {@link dial} plus the retry schedule. */
export interface RetryOptions extends DialOptions {
  /** How many dials to try in all. Default 10. */
  attempts?: number;
  /** The first wait between attempts; each later wait doubles. Default 100. */
  delayMs?: number;
  /** The longest wait between attempts. Default 2000. */
  maxDelayMs?: number;
  /**
   * After connecting, watch this long for the peer closing at once (a QEMU
   * host forward with no guest behind it) before handing the stream over.
   * 0 skips the check. Default 50.
   */
  settleMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("This operation was aborted", "AbortError");
}

function nonNegative(what: string, name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v < 0) throw new InvalidError(`${what}: ${name} must be a number ≥ 0, got ${String(value)}`);
  return v;
}

/**
 * Opens a byte stream to an address. TCP and TLS streams have Nagle's
 * algorithm off. Nothing is read from or written to the stream before it is
 * returned.
 *
 * @throws {InvalidError} a bad dial string, port 0, a malformed pin, or a pin for a non-TLS address.
 * @throws {PermissionError} `TLS certificate fingerprint mismatch: expected X, got Y`, or an untrusted certificate without a pin.
 * @throws {ClosedError} connection refused or reset; {@link NotFoundError} no such socket file or host.
 * @throws {NineError} class `io` on timeout and other network failures.
 *
 * @example
 * ```ts
 * const conn = await dial("tcp!127.0.0.1!5640", { timeoutMs: 2000 });
 * const gpu = await dial("tls!10.0.2.2!5641", { pin: "3F:A0:…" });
 * ```
 */
export async function dial(addr: DialAddress | string, options: DialOptions = {}): Promise<Duplex> {
  const address = toDialAddress(addr);
  const what = `dial ${formatDialString(address)}`;
  if (address.kind !== "unix" && address.port === 0) {
    throw new InvalidError(`${what}: port 0 cannot be dialled; give the port the server listens on`);
  }
  if (address.kind === "tls" && options.onread !== undefined) {
    throw new InvalidError(`${what}: onread applies only to tcp! and unix! addresses`);
  }
  if (address.kind !== "tls" && (options.pin !== undefined || options.ca !== undefined)) {
    throw new InvalidError(`${what}: pin and ca apply only to tls! addresses`);
  }
  if (address.kind !== "tls" && options.checkCertificate !== undefined) {
    throw new InvalidError(`${what}: checkCertificate applies only to tls! addresses`);
  }
  const pin = options.pin === undefined ? undefined : normalizeFingerprint(options.pin);
  const timeoutMs = nonNegative(what, "timeoutMs", options.timeoutMs, DEFAULT_TIMEOUT_MS);
  const signal = options.signal;
  if (signal?.aborted) throw abortReason(signal);

  return new Promise<Duplex>((resolve, reject) => {
    let socket: net.Socket;
    if (address.kind === "unix") {
      socket = net.connect({ path: address.path, ...(options.onread ? { onread: options.onread } : {}) });
    } else if (address.kind === "tcp") {
      socket = net.connect({ host: address.host, port: address.port, ...(options.onread ? { onread: options.onread } : {}) });
    } else {
      const tlsOptions: tls.ConnectionOptions = {
        host: address.host,
        port: address.port,
        rejectUnauthorized: pin === undefined && options.checkCertificate === undefined,
      };
      if (options.servername !== undefined) tlsOptions.servername = options.servername;
      if (options.ca !== undefined) tlsOptions.ca = options.ca;
      // node:tls on first use: TCP and Unix dials never load it.
      socket = (createRequire(import.meta.url)("node:tls") as typeof tls).connect(tlsOptions);
    }
    const readyEvent = address.kind === "tls" ? "secureConnect" : "connect";

    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const cleanup = (): void => {
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      socket.off(readyEvent, onReady);
      socket.off("error", onError);
      socket.off("close", onClose);
      signal?.removeEventListener("abort", onAbort);
    };
    const fail = (err: unknown): void => {
      if (settled) return;
      cleanup();
      socket.on("error", () => {}); // late errors of a socket we abandon
      socket.destroy();
      reject(err);
    };
    function onReady(): void {
      if (settled) return;
      if (pin !== undefined && address.kind === "tls") {
        const got = (socket as tls.TLSSocket).getPeerCertificate().fingerprint256 ?? "(no certificate)";
        if (got !== pin) {
          fail(new PermissionError(`${what}: TLS certificate fingerprint mismatch: expected ${pin}, got ${got}`));
          return;
        }
      }
      if (options.checkCertificate !== undefined && address.kind === "tls") {
        try {
          options.checkCertificate(new Uint8Array((socket as tls.TLSSocket).getPeerCertificate().raw));
        } catch (err) {
          fail(err);
          return;
        }
      }
      cleanup();
      if (address.kind !== "unix") socket.setNoDelay(true);
      resolve(socket);
    }
    function onError(err: Error): void {
      fail(fromSystemError(what, err));
    }
    function onClose(): void {
      fail(markRetryable(errorOfClass("closed", `${what}: connection closed before it was established`)));
    }
    function onAbort(): void {
      fail(abortReason(signal as AbortSignal));
    }
    socket.once(readyEvent, onReady);
    socket.once("error", onError);
    socket.once("close", onClose);
    signal?.addEventListener("abort", onAbort, { once: true });
    if (timeoutMs > 0) {
      timer = setTimeout(() => {
        fail(markRetryable(errorOfClass("io", `${what}: timed out after ${timeoutMs} ms`)));
      }, timeoutMs);
    }
  });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortReason(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Resolves true if the stream is still open after `ms`, false if the peer closed it. */
function settle(conn: Duplex, ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const done = (open: boolean, err?: unknown): void => {
      clearTimeout(timer);
      conn.off("end", onGone);
      conn.off("close", onGone);
      conn.off("error", onGone);
      signal?.removeEventListener("abort", onAbort);
      if (!open) {
        conn.on("error", () => {});
        conn.destroy();
      }
      if (err !== undefined) reject(err);
      else resolve(open);
    };
    const onGone = (): void => done(false);
    const onAbort = (): void => done(false, abortReason(signal as AbortSignal));
    const timer = setTimeout(() => done(true), ms);
    conn.once("end", onGone);
    conn.once("close", onGone);
    conn.once("error", onGone);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Dials until the peer answers: retries while the connection is refused,
 * reset, closed right after being accepted, times out, or (Unix) the socket
 * file does not exist yet, waiting `delayMs`, then twice as long each time up
 * to `maxDelayMs`. Other failures (bad address, pin mismatch, untrusted
 * certificate, unknown host) are thrown at once.
 *
 * @throws the last failure's class, saying `gave up after N attempts`.
 *
 * @example
 * ```ts
 * // QEMU forwards host port 5640 to the guest, which is still booting.
 * const conn = await dialWithRetry("127.0.0.1:5640", { attempts: 50, delayMs: 100 });
 * ```
 */
export async function dialWithRetry(addr: DialAddress | string, options: RetryOptions = {}): Promise<Duplex> {
  const address = toDialAddress(addr);
  const what = `dial ${formatDialString(address)}`;
  const attempts = options.attempts ?? 10;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new InvalidError(`${what}: attempts must be a whole number ≥ 1, got ${String(options.attempts)}`);
  }
  let delay = nonNegative(what, "delayMs", options.delayMs, 100);
  const maxDelay = nonNegative(what, "maxDelayMs", options.maxDelayMs, 2000);
  const settleMs = nonNegative(what, "settleMs", options.settleMs, 50);
  const started = Date.now();
  let last: NineError | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const conn = await dial(address, options);
      if (settleMs === 0 || (await settle(conn, settleMs, options.signal))) return conn;
      last = errorOfClass("closed", `${what}: connection closed right after it was accepted (is the server up yet?)`);
    } catch (err) {
      if (!isRetryable(err) || !(err instanceof NineError)) throw err;
      last = err;
    }
    if (attempt < attempts) {
      await sleep(delay, options.signal);
      delay = Math.min(delay * 2, maxDelay);
    }
  }
  const lastError = last as NineError;
  const reason = lastError.detail.startsWith(`${what}: `) ? lastError.detail.slice(what.length + 2) : lastError.detail;
  throw errorOfClass(
    lastError.errorClass,
    `${what}: gave up after ${attempts} attempts in ${Date.now() - started} ms: ${reason}`,
    lastError,
  );
}
