/**
 * An in-process connected pair of byte streams, behaving like the two ends
 * of a socket: what one end writes the other reads, with real backpressure,
 * and ending or destroying one end is seen by the other.
 *
 * @module
 */

import { Duplex } from "node:stream";
import { ClosedError, InvalidError } from "../errors.ts";

/** Options of {@link memoryPair}. */
export interface MemoryPairOptions {
  /** Bytes buffered per direction on each side before backpressure. Default 16 KiB, like a socket. */
  highWaterMark?: number;
}

/**
 * One end. A chunk written here is pushed into the peer's readable buffer;
 * when that buffer is full, the write's callback is held until the peer reads
 * (its `_read`), so this end's writable buffer fills and `write()` returns
 * false until `'drain'`.
 */
class MemoryEnd extends Duplex {
  #peer: MemoryEnd | undefined;
  /** Set once end-of-stream has been pushed into our readable side. */
  #eof = false;
  /** Callback of our write that waits for the peer to read. */
  #waiting: ((err?: Error | null) => void) | undefined;

  constructor(highWaterMark: number) {
    // allowHalfOpen: false — like a socket, an end that sees EOF ends its
    // own writing side too, so both ends close after a graceful end().
    super({ highWaterMark, allowHalfOpen: false, decodeStrings: true });
  }

  connect(peer: MemoryEnd): void {
    this.#peer = peer;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    const peer = this.#peer;
    if (peer === undefined || peer.destroyed) {
      callback(new ClosedError("memory pair: write after the peer was destroyed"));
      return;
    }
    if (peer.push(chunk)) callback();
    else this.#waiting = callback;
  }

  override _read(): void {
    const peer = this.#peer;
    const waiting = peer === undefined ? undefined : peer.#waiting;
    if (peer !== undefined && waiting !== undefined) {
      peer.#waiting = undefined;
      waiting();
    }
  }

  override _final(callback: (err?: Error | null) => void): void {
    const peer = this.#peer;
    if (peer !== undefined && !peer.destroyed) peer.#pushEof();
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const peer = this.#peer;
    // Our own write still waiting for the peer: it will never be read now.
    const mine = this.#waiting;
    this.#waiting = undefined;
    mine?.(err ?? new ClosedError("memory pair: stream destroyed"));
    if (peer !== undefined && !peer.destroyed) {
      // The peer's write waiting for us to read fails, as a write to a reset socket does.
      const theirs = peer.#waiting;
      peer.#waiting = undefined;
      theirs?.(new ClosedError("memory pair: write after the peer was destroyed"));
      // And the peer reads end-of-stream after what it already received.
      peer.#pushEof();
    }
    callback(err);
  }

  /** Ends our readable side once: the peer will write no more. */
  #pushEof(): void {
    if (this.#eof) return;
    this.#eof = true;
    this.push(null);
  }
}

/**
 * Makes an in-process connected pair of byte streams, for tests and for
 * running a client and server in one process. Each end is a plain `Duplex`:
 * `write()` returns false once the peer stops reading and about
 * `2 × highWaterMark` bytes are in flight, and `'drain'` fires when it reads
 * again; `end()` on one side gives the other `'end'`, after which both close;
 * `destroy()` on one side gives the other `'end'` and then `'close'`, and
 * makes the other side's pending and later writes fail with `closed:`.
 *
 * @example
 * ```ts
 * const [client, server] = memoryPair();
 * server.on("data", (chunk) => server.write(chunk)); // echo
 * client.write("hello");
 * client.once("data", (chunk) => console.log(String(chunk))); // "hello"
 * ```
 */
export function memoryPair(options: MemoryPairOptions = {}): [Duplex, Duplex] {
  const hwm = options.highWaterMark ?? 16 * 1024;
  if (!Number.isInteger(hwm) || hwm < 1) {
    throw new InvalidError(`memory pair: highWaterMark must be a whole number ≥ 1, got ${String(options.highWaterMark)}`);
  }
  const a = new MemoryEnd(hwm);
  const b = new MemoryEnd(hwm);
  a.connect(b);
  b.connect(a);
  return [a, b];
}
