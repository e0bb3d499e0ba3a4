/**
 * Listening: accept byte streams on a `tcp!`, `tls!` or `unix!` address and
 * hand each one, with who is on the other end, to a callback. The callback's
 * owner (the 9P server core) reads and writes the stream; this file only
 * opens, tracks and closes connections.
 *
 * @module
 */

import { chmod, lstat, unlink } from "node:fs/promises";
import net from "node:net";
import { createRequire } from "node:module";
import type { Duplex } from "node:stream";
import type * as tls from "node:tls";
import { BusyError, InvalidError, type NineError } from "../errors.ts";
import { formatDialString, toDialAddress, type DialAddress } from "./dial.ts";
import { errorOfClass, fromSystemError, systemCode } from "./fail.ts";

/** Who is on the other end of an accepted connection. */
export interface PeerInfo {
  transport: "tcp" | "unix" | "tls" | "memory";
  /**
   * The peer as a dial string (`tcp!10.0.2.2!40312`). Unix clients are
   * anonymous, so for them it is the listening socket (`unix!/run/nd.sock`).
   */
  remote: string;
}

/** Called once per accepted connection; the stream is the callee's to use and close. */
export type ConnectionHandler = (conn: Duplex, peer: PeerInfo) => void;

/** Options of {@link listen}. */
export interface ListenOptions {
  /** Required for `tls!` addresses, refused otherwise: the server's PEM key and certificate. */
  tls?: { key: string; cert: string };
  /** Unix only: the socket file's permission bits. Default 0o600 (owner only). */
  mode?: number;
  /** The kernel's queue of connections not yet accepted. Default: Node's (511). */
  backlog?: number;
  /** Closes the listener (as {@link Listener.close} does) when aborted. */
  signal?: AbortSignal;
  /** TLS only: drops a connection whose handshake has not finished after this long. Default 10 000. */
  handshakeTimeoutMs?: number;
  /**
   * Told of failures that concern one connection or the accept loop — a TLS
   * handshake that failed, an `onConnection` that threw (its stream is
   * destroyed) — which never stop the listener. Default: ignore them.
   */
  onError?: (err: NineError) => void;
}

/** An open listening socket. */
export interface Listener {
  /** The address actually bound: with the real port when port 0 was asked. */
  readonly address: DialAddress;
  /** {@link address} as a dial string, to hand to clients. */
  readonly dialString: string;
  /** How many accepted connections are still open. */
  readonly connections: number;
  /**
   * Stops accepting, destroys the open connections, removes a Unix socket
   * file; resolves when all of that is done. Calling it again is harmless.
   */
  close(): Promise<void>;
}

const DEFAULT_UNIX_MODE = 0o600;

/**
 * node:tls, loaded on first use: TCP and Unix listeners never load it, so
 * the guest root task's boot does not pay for it.
 */
function loadTls(): typeof tls {
  return createRequire(import.meta.url)("node:tls") as typeof tls;
}

function peerOf(kind: "tcp" | "tls", socket: net.Socket): string {
  const host = socket.remoteAddress ?? "unknown";
  const port = socket.remotePort ?? 0;
  return formatDialString({ kind, host, port });
}

class SocketListener implements Listener {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #address: DialAddress;
  #streams = 0;
  #closing: Promise<void> | undefined;
  #unixIno: number | undefined;

  constructor(server: net.Server, address: DialAddress) {
    this.#server = server;
    this.#address = address;
  }

  /** Records what was actually bound (the real port; the socket file's inode). */
  bound(address: DialAddress, unixIno: number | undefined): void {
    this.#address = address;
    this.#unixIno = unixIno;
  }

  get address(): DialAddress {
    return this.#address;
  }

  get dialString(): string {
    return formatDialString(this.#address);
  }

  get connections(): number {
    return this.#streams;
  }

  /** Tracks a socket (raw or TLS) so close() can destroy it. */
  track(socket: net.Socket, counted: boolean): void {
    if (this.#closing !== undefined) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    if (counted) this.#streams++;
    socket.once("close", () => {
      this.#sockets.delete(socket);
      if (counted) this.#streams--;
    });
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await stopped;
    const address = this.#address;
    if (address.kind === "unix" && this.#unixIno !== undefined) {
      try {
        // Only our own socket: another server may have replaced it meanwhile.
        if ((await lstat(address.path)).ino === this.#unixIno) await unlink(address.path);
      } catch (err) {
        if (systemCode(err) !== "ENOENT") throw fromSystemError(`close ${this.dialString}`, err);
      }
    }
  }
}

/** Probes an existing Unix socket: true if a server answers on it. */
function socketIsLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect({ path });
    const done = (live: boolean): void => {
      probe.removeAllListeners();
      probe.on("error", () => {});
      probe.destroy();
      resolve(live);
    };
    probe.once("connect", () => done(true));
    probe.once("error", () => done(false));
    probe.setTimeout(1000, () => done(true)); // something holds it; do not steal it
  });
}

/** Removes a stale socket file; refuses to remove anything else. */
async function clearStaleSocket(what: string, path: string): Promise<void> {
  let stat;
  try {
    stat = await lstat(path);
  } catch (err) {
    if (systemCode(err) === "ENOENT") return;
    throw fromSystemError(what, err);
  }
  if (!stat.isSocket()) {
    throw new BusyError(`${what}: ${path} exists and is not a socket; refusing to delete it, choose another path or remove it yourself`);
  }
  if (await socketIsLive(path)) {
    throw new BusyError(`${what}: another server is listening on ${path}`);
  }
  try {
    await unlink(path);
  } catch (err) {
    if (systemCode(err) !== "ENOENT") throw fromSystemError(`${what}: removing stale socket`, err);
  }
}

function bind(server: net.Server, what: string, address: DialAddress, backlog: number | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(fromSystemError(what, err));
    server.once("error", onError);
    const opts: net.ListenOptions =
      address.kind === "unix" ? { path: address.path } : { host: address.host, port: address.port };
    if (backlog !== undefined) opts.backlog = backlog;
    server.listen(opts, () => {
      server.off("error", onError);
      resolve();
    });
  });
}

/**
 * Listens on an address and calls `onConnection` with each accepted stream.
 * TCP and TLS streams have Nagle's algorithm off. A Unix socket file left by
 * a dead server is removed first (never a file that is not a socket, never a
 * socket someone answers on), created with `mode` 0600, and removed on close.
 * Accepted streams carry a no-op `error` listener so that a peer resetting
 * the connection cannot crash the process; their owner still sees `error`
 * and `close`.
 *
 * @throws {InvalidError} a bad address, or `tls` options missing/misplaced.
 * @throws {BusyError} the address is in use, or a non-socket file is in the way.
 * @throws {PermissionError} binding is not allowed (low port, directory mode).
 *
 * @example
 * ```ts
 * const listener = await listen("127.0.0.1:0", (conn, peer) => {
 *   console.log(`session from ${peer.remote}`);
 *   serve(conn);
 * });
 * console.log(listener.dialString); // "tcp!127.0.0.1!40021"
 * await listener.close();
 * ```
 */
export async function listen(
  addr: DialAddress | string,
  onConnection: ConnectionHandler,
  options: ListenOptions = {},
): Promise<Listener> {
  const address = toDialAddress(addr, { listen: true });
  const what = `listen ${formatDialString(address)}`;
  if (address.kind === "tls" && options.tls === undefined) {
    throw new InvalidError(`${what}: a tls! address needs options.tls with a PEM key and cert`);
  }
  if (address.kind !== "tls" && options.tls !== undefined) {
    throw new InvalidError(`${what}: options.tls given for a ${address.kind}! address; use tls!HOST!PORT`);
  }
  const mode = options.mode ?? DEFAULT_UNIX_MODE;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw new InvalidError(`${what}: mode must be permission bits 0-0o777, got ${String(options.mode)}`);
  }
  options.signal?.throwIfAborted();
  const report = (err: NineError): void => options.onError?.(err);

  const tlsKeys = options.tls === undefined ? undefined : { key: options.tls.key, cert: options.tls.cert };
  if (tlsKeys !== undefined) {
    try {
      loadTls().createSecureContext(tlsKeys); // refuse bad PEM here, with a clear error
    } catch (err) {
      throw errorOfClass("invalid", `${what}: TLS key or certificate unusable: ${err instanceof Error ? err.message : String(err)}`, err);
    }
  }

  if (address.kind === "unix") await clearStaleSocket(what, address.path);

  const hand = (conn: net.Socket, remote: string): void => {
    const peer: PeerInfo = { transport: address.kind, remote };
    try {
      onConnection(conn, peer);
    } catch (err) {
      conn.destroy();
      report(errorOfClass("io", `${what}: connection handler threw for ${remote}: ${err instanceof Error ? err.message : String(err)}`, err));
    }
  };

  const server =
    tlsKeys === undefined
      ? net.createServer()
      : loadTls().createServer({ ...tlsKeys, handshakeTimeout: options.handshakeTimeoutMs ?? 10_000 });
  const listener = new SocketListener(server, address);
  server.on("connection", (raw: net.Socket) => {
    raw.on("error", () => {});
    if (address.kind !== "unix") raw.setNoDelay(true);
    listener.track(raw, address.kind !== "tls");
    if (address.kind === "tcp") hand(raw, peerOf("tcp", raw));
    if (address.kind === "unix") hand(raw, formatDialString(address));
  });
  if (tlsKeys !== undefined) {
    server.on("secureConnection", (sock: tls.TLSSocket) => {
      sock.on("error", () => {});
      listener.track(sock, true);
      hand(sock, peerOf("tls", sock));
    });
    server.on("tlsClientError", (err: Error, sock: tls.TLSSocket) => {
      report(fromSystemError(`${what}: TLS handshake with ${peerOf("tls", sock)}`, err));
      sock.destroy();
    });
  }

  await bind(server, what, address, options.backlog);
  server.on("error", (err: Error) => report(fromSystemError(what, err)));

  if (address.kind === "unix") {
    try {
      listener.bound(address, (await lstat(address.path)).ino);
      await chmod(address.path, mode);
    } catch (err) {
      await listener.close().catch(() => {});
      throw fromSystemError(`${what}: setting the socket file's mode`, err);
    }
  } else {
    const info = server.address() as net.AddressInfo;
    listener.bound({ kind: address.kind, host: info.address, port: info.port }, undefined);
  }
  options.signal?.addEventListener("abort", () => void listener.close().catch(() => {}), { once: true });
  return listener;
}
