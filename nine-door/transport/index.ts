/**
 * NineDoor transports: byte streams for the 9P server core and client, which
 * take a plain Node `Duplex` and know nothing of sockets. Transports, in turn,
 * know nothing of 9P.
 *
 * - Addresses are Plan 9 dial strings: `tcp!HOST!PORT`, `tls!HOST!PORT`,
 *   `unix!/PATH`, or for convenience `HOST:PORT` and `[IPV6]:PORT`.
 * - {@link listen} accepts TCP, Unix (mode 0600, stale socket cleanup) and
 *   TLS; {@link dial} opens them, TLS optionally pinned to a certificate
 *   fingerprint instead of a CA; {@link dialWithRetry} waits for a peer that
 *   is still coming up (a QEMU host forward before the guest listens).
 * - {@link memoryPair} is a connected in-process pair with real backpressure.
 * - {@link makeSelfSignedCert} makes a key and certificate with `openssl`.
 *
 * Failures are the typed NineDoor errors (`invalid:`, `busy:`, `closed:`,
 * `permission:`, `not found:`, `io:`) naming the address, then the detail.
 *
 * @example
 * ```ts
 * import { listen, dial, makeSelfSignedCert, certificateFingerprint } from "./nine-door/transport/index.ts";
 *
 * const { key, cert } = await makeSelfSignedCert({ commonName: "gpu-bridge" });
 * const listener = await listen("tls!127.0.0.1!0", (conn) => conn.pipe(conn), { tls: { key, cert } });
 * const conn = await dial(listener.dialString, { pin: certificateFingerprint(cert) });
 * conn.end("ping");
 * await listener.close();
 * ```
 * @module
 */
export {
  formatDialString,
  parseDialString,
  parseListenAddress,
  type DialAddress,
  type DialKind,
} from "./dial.ts";
export {
  listen,
  type ConnectionHandler,
  type Listener,
  type ListenOptions,
  type PeerInfo,
} from "./listen.ts";
export { dial, dialWithRetry, type DialOptions, type RetryOptions } from "./connect.ts";
export { certificateFingerprint, normalizeFingerprint } from "./pin.ts";
export { memoryPair, type MemoryPairOptions } from "./memory.ts";
export { makeSelfSignedCert, type SelfSignedCert, type SelfSignedCertOptions } from "./cert.ts";
