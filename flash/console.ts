/**
 * The serial console (`cohesix console`): a board's UART (or QEMU's
 * `-serial pty`) through the serialport package. Everything received goes
 * to the output and the log file; a terminal's keys go to the board in raw
 * mode, and Ctrl-] (0x1d) ends the session. For scripts, `expect` ends it
 * as soon as a text has been received, however the bytes were split.
 *
 * @example
 * ```ts
 * const r = await runConsole({ port: "/dev/ttyUSB0", expect: "READY", timeoutMs: 60_000, output: (b) => process.stdout.write(b) });
 * console.log(r.end); // "expected"
 * ```
 * @module
 */
import { closeSync, constants, createWriteStream, existsSync, openSync, readSync, type WriteStream } from "node:fs";
import { SerialPort } from "serialport";
import { NineError } from "../nine-door/index.ts";

/** Ctrl-]: ends an interactive session, as in telnet and picocom. */
export const ESCAPE_BYTE = 0x1d;

/** The console's keyboard: stdin, or any readable stream in tests. */
export interface ConsoleInput extends NodeJS.ReadableStream {
  readonly isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
}

/** Options of {@link runConsole}. */
export interface ConsoleOptions {
  /** The serial device: `/dev/ttyUSB0`, `/dev/ttyAMA0`, `/dev/pts/3`. */
  readonly port: string;
  /** Default 115200. */
  readonly baudRate?: number;
  /** Received bytes are appended here too. */
  readonly logFile?: string;
  /** End with `"expected"` as soon as this text has been received. */
  readonly expect?: string;
  /** With `expect`: fail when the text has not appeared within this time (also bounds waiting for the port to appear). */
  readonly timeoutMs?: number;
  /**
   * Keys to send. A terminal is put in raw mode and Ctrl-] ends the
   * session; with `expect`, input is read only from a terminal.
   */
  readonly input?: ConsoleInput;
  /** Received bytes. */
  readonly output: (bytes: Uint8Array) => void;
  /** Messages for the user (stderr); the first says the port is open. */
  readonly notice?: (text: string) => void;
  readonly signal?: AbortSignal;
}

/** How a session ended without an error. */
export interface ConsoleResult {
  readonly end: "expected" | "escape" | "aborted";
  /** Bytes received. */
  readonly bytes: number;
}

/** The port could not be opened, went away, or the expected text did not come. */
export class ConsoleError extends NineError {
  constructor(cls: "not found" | "permission" | "busy" | "closed" | "io", detail: string) {
    super(cls, detail);
    this.name = "ConsoleError";
  }
}

/**
 * Finds a byte string in a stream that arrives in chunks: keeps the last
 * `needle.length - 1` bytes so a match split across chunks is found.
 *
 * @example
 * ```ts
 * const m = new StreamMatcher("READY");
 * m.push(Buffer.from("..RE")); // false
 * m.push(Buffer.from("ADY\n")); // true
 * ```
 */
export class StreamMatcher {
  readonly #needle: Buffer;
  #tail: Buffer = Buffer.alloc(0);

  constructor(needle: string) {
    if (needle === "") throw new NineError("invalid", "the text to expect is empty");
    this.#needle = Buffer.from(needle, "utf8");
  }

  /** Feeds a chunk; true once the needle has been seen (in this chunk or across the previous one). */
  push(chunk: Uint8Array): boolean {
    const hay = Buffer.concat([this.#tail, chunk]);
    if (hay.indexOf(this.#needle) !== -1) return true;
    const keep = Math.min(hay.length, this.#needle.length - 1);
    this.#tail = Buffer.from(hay.subarray(hay.length - keep));
    return false;
  }
}

function openError(port: string, err: unknown): ConsoleError {
  const text = err instanceof Error ? err.message : String(err);
  if (/ENOENT|No such file/i.test(text)) return new ConsoleError("not found", `${port}: no such serial port (USB adapters appear as /dev/ttyUSB* or /dev/ttyACM*; see ls /dev/serial/by-id)`);
  if (/EACCES|Permission denied/i.test(text)) return new ConsoleError("permission", `${port}: permission denied (add yourself to the dialout group, then log in again)`);
  if (/lock|EWOULDBLOCK|EAGAIN|Resource temporarily unavailable/i.test(text)) return new ConsoleError("busy", `${port}: another program has it open (close screen, minicom or picocom first)`);
  return new ConsoleError("io", `${port}: cannot open: ${text}`);
}

/**
 * Reads what the port already holds before serialport opens it: its open
 * flushes the tty's queues (tcflush), which would drop output that arrived
 * between the device appearing and the console opening.
 */
function drainPending(port: string): { fd: number; bytes: Buffer } {
  const fd = openSync(port, constants.O_RDONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
  const parts: Buffer[] = [];
  const buf = Buffer.allocUnsafe(65536);
  for (let i = 0; i < 1024; i++) {
    let n: number;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch {
      break; // EAGAIN: nothing more queued; EIO: the other side is not there yet.
    }
    if (n <= 0) break;
    parts.push(Buffer.from(buf.subarray(0, n)));
  }
  return { fd, bytes: Buffer.concat(parts) };
}

function openPort(port: string, baudRate: number): Promise<SerialPort> {
  return new Promise((resolve, reject) => {
    const sp = new SerialPort({ path: port, baudRate, autoOpen: false });
    sp.open((err) => (err ? reject(err) : resolve(sp)));
  });
}

/** How often an open port's device node is checked for (see runConsole). */
const PRESENCE_CHECK_MS = 250;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens the port, waiting for it to appear until `deadline` (ms since the epoch) when one is given. */
async function openWithRetry(port: string, baudRate: number, deadline: number | undefined, signal?: AbortSignal): Promise<{ sp: SerialPort; early: Buffer }> {
  for (;;) {
    try {
      const pending = drainPending(port);
      try {
        const sp = await openPort(port, baudRate);
        return { sp, early: pending.bytes };
      } finally {
        closeSync(pending.fd);
      }
    } catch (err) {
      const e = openError(port, err);
      const retry = e.errorClass === "not found" && deadline !== undefined && Date.now() < deadline && !signal?.aborted;
      if (!retry) throw e;
      await sleep(100);
    }
  }
}

/**
 * Runs a console session until the expected text arrives, Ctrl-] is typed,
 * or `signal` aborts. Throws {@link ConsoleError}: the port cannot be
 * opened (`not found`, `permission`, `busy`), it went away (`closed`), or
 * `expect` timed out (`io`).
 */
export async function runConsole(options: ConsoleOptions): Promise<ConsoleResult> {
  const { port, input, notice } = options;
  const baudRate = options.baudRate ?? 115200;
  const matcher = options.expect === undefined ? undefined : new StreamMatcher(options.expect);
  const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
  options.signal?.throwIfAborted();

  // The log first: a log that cannot be written fails before the port is touched.
  const log = options.logFile === undefined ? undefined : await openLog(options.logFile);
  const endLog = () => (log === undefined ? Promise.resolve() : new Promise<void>((r) => log.end(r)));
  let opened: { sp: SerialPort; early: Buffer };
  try {
    opened = await openWithRetry(port, baudRate, matcher ? deadline : undefined, options.signal);
  } catch (err) {
    await endLog();
    throw err;
  }
  const { sp, early } = opened;

  const interactive = input !== undefined && (matcher === undefined || input.isTTY === true);
  let bytes = 0;
  let timer: NodeJS.Timeout | undefined;
  let presence: NodeJS.Timeout | undefined;
  let onInput: ((chunk: Buffer | string) => void) | undefined;
  let rawSet = false;
  let onAbort: (() => void) | undefined;

  const outcome = new Promise<ConsoleResult>((resolve, reject) => {
    const received = (chunk: Buffer) => {
      bytes += chunk.length;
      options.output(chunk);
      log?.write(chunk);
      if (matcher?.push(chunk)) resolve({ end: "expected", bytes });
    };
    if (early.length > 0) received(early);
    sp.on("data", received);
    const gone = (why: string) => {
      if (matcher) reject(new ConsoleError("closed", `${port} closed before ${JSON.stringify(options.expect)} appeared${why}`));
      else reject(new ConsoleError("closed", `${port} went away${why}`));
    };
    sp.on("close", (err: Error | null) => gone(err ? `: ${err.message}` : ""));
    // A hung-up pty (QEMU or socat exited) reads as endless end-of-file,
    // which serialport retries without a word; its node leaves /dev/pts as
    // the master closes, as a USB adapter's leaves /dev when unplugged.
    presence = setInterval(() => {
      if (!existsSync(port)) gone(": the device node is gone");
    }, PRESENCE_CHECK_MS);
    sp.on("error", (err: Error) => reject(new ConsoleError("io", `${port}: ${err.message}`)));
    if (matcher && deadline !== undefined) {
      timer = setTimeout(() => {
        reject(new ConsoleError("io", `${JSON.stringify(options.expect)} did not appear on ${port} within ${Math.round(options.timeoutMs! / 1000)} s (${bytes} bytes received)`));
      }, Math.max(0, deadline - Date.now()));
    }
    onAbort = () => resolve({ end: "aborted", bytes });
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (interactive) {
      if (input.isTTY && input.setRawMode) {
        input.setRawMode(true);
        rawSet = true;
      }
      onInput = (chunk) => {
        const b = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
        const esc = b.indexOf(ESCAPE_BYTE);
        const send = esc === -1 ? b : b.subarray(0, esc);
        if (send.length > 0) sp.write(send);
        if (esc !== -1) resolve({ end: "escape", bytes });
      };
      input.on("data", onInput);
      input.resume();
    }
  });
  if (matcher) notice?.(`waiting for ${JSON.stringify(options.expect)} on ${port}${deadline === undefined ? "" : ` (timeout ${Math.round(options.timeoutMs! / 1000)} s)`}\n`);
  else notice?.(`connected to ${port} at ${baudRate} baud${interactive ? "; Ctrl-] exits" : ""}\r\n`);

  try {
    return await outcome;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    if (presence !== undefined) clearInterval(presence);
    if (onAbort !== undefined) options.signal?.removeEventListener("abort", onAbort);
    if (onInput !== undefined && input !== undefined) {
      input.removeListener("data", onInput);
      input.pause();
      if (rawSet) input.setRawMode?.(false);
    }
    sp.removeAllListeners("data");
    sp.removeAllListeners("close");
    sp.on("error", () => {});
    await closePort(sp);
    await endLog();
  }
}

function openLog(path: string): Promise<WriteStream> {
  return new Promise((resolve, reject) => {
    const ws = createWriteStream(path, { flags: "a" });
    ws.once("open", () => resolve(ws));
    ws.once("error", (err) => reject(new ConsoleError("io", `cannot open log file ${path}: ${err.message}`)));
  });
}

function closePort(sp: SerialPort): Promise<void> {
  return new Promise((resolve) => {
    if (!sp.isOpen) return resolve();
    sp.close(() => resolve());
  });
}
