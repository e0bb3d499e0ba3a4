/**
 * The console watcher: QEMU writes the guest's serial console to a log file
 * (`-serial file:…`); this reads it as it grows, hands each line on, and
 * waits for a line (the guest's `READY tcp!…`), failing early on a kernel
 * panic or when QEMU exits.
 * @module
 */
import { open, type FileHandle } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/** A kernel panic seen on the console; `tail` holds the last console lines. */
export class GuestPanicError extends Error {
  readonly tail: string;
  constructor(line: string, tail: string) {
    super(`guest kernel panic: ${line.trim()}\n--- console (last lines) ---\n${tail}`);
    this.name = "GuestPanicError";
    this.tail = tail;
  }
}

/** Options of {@link ConsoleWatcher}. */
export interface ConsoleWatcherOptions {
  /** Called with each complete console line (without the newline). */
  readonly onLine?: (line: string) => void;
  /** Poll interval, ms; default 50. */
  readonly pollMs?: number;
  /** Start reading at this byte offset; default 0. */
  readonly offset?: number;
}

/** Options of {@link ConsoleWatcher.waitFor}. */
export interface WaitForOptions {
  /** Give up after this long, ms. */
  readonly timeoutMs: number;
  /** Resolves when QEMU has exited: waiting stops with an error. */
  readonly exited?: Promise<unknown>;
  /** What is awaited, for the timeout message, e.g. `READY`. */
  readonly what?: string;
}

const PANIC = /Kernel panic - not syncing|end Kernel panic/;
const TAIL_LINES = 30;

/**
 * Follows a console log file.
 *
 * @example
 * ```ts
 * const watcher = new ConsoleWatcher(".cohesix/run/aarch64-virt/console.log", { onLine: (l) => console.log(l) });
 * const ready = await watcher.waitFor(/^READY (\S+)/, { timeoutMs: 120_000, what: "READY" });
 * watcher.close();
 * ```
 */
export class ConsoleWatcher {
  readonly path: string;
  readonly #options: ConsoleWatcherOptions;
  readonly #lines: string[] = [];
  #offset: number;
  #partial = "";
  #fh: FileHandle | undefined;
  #closed = false;
  #panic: GuestPanicError | undefined;

  constructor(path: string, options: ConsoleWatcherOptions = {}) {
    this.path = path;
    this.#options = options;
    this.#offset = options.offset ?? 0;
  }

  /** Every complete line read so far. */
  get lines(): readonly string[] {
    return this.#lines;
  }

  /** The last lines, for error messages. */
  tail(n = TAIL_LINES): string {
    return this.#lines.slice(-n).join("\n");
  }

  /** Reads what the file has gained since the last call; returns the new lines. */
  async poll(): Promise<string[]> {
    if (!this.#fh) {
      this.#fh = await open(this.path, "r").catch(() => undefined);
      if (!this.#fh) return [];
    }
    const fresh: string[] = [];
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const { bytesRead } = await this.#fh.read(buf, 0, buf.length, this.#offset);
      if (bytesRead === 0) break;
      this.#offset += bytesRead;
      this.#partial += buf.subarray(0, bytesRead).toString("utf8");
      let nl: number;
      while ((nl = this.#partial.indexOf("\n")) >= 0) {
        const line = this.#partial.slice(0, nl).replace(/\r$/, "");
        this.#partial = this.#partial.slice(nl + 1);
        fresh.push(line);
      }
    }
    for (const line of fresh) {
      this.#lines.push(line);
      this.#options.onLine?.(line);
      if (!this.#panic && PANIC.test(line)) this.#panic = new GuestPanicError(line, "");
    }
    return fresh;
  }

  /**
   * Resolves with the match of the first line (already read or to come)
   * that matches `pattern`. Rejects on a kernel panic, when `exited`
   * resolves first, or after the timeout, with the console's tail.
   */
  async waitFor(pattern: RegExp, options: WaitForOptions): Promise<RegExpExecArray> {
    const deadline = Date.now() + options.timeoutMs;
    let exited = false;
    void options.exited?.then(
      () => (exited = true),
      () => (exited = true),
    );
    let checked = 0;
    for (;;) {
      await this.poll();
      for (; checked < this.#lines.length; checked++) {
        const m = pattern.exec(this.#lines[checked]!);
        if (m) return m;
        if (PANIC.test(this.#lines[checked]!)) {
          await sleep(200);
          await this.poll();
          throw new GuestPanicError(this.#lines[checked]!, this.tail());
        }
      }
      if (exited) {
        await this.poll();
        throw new Error(`guest: QEMU exited before ${options.what ?? String(pattern)}\n--- console (last lines) ---\n${this.tail()}`);
      }
      if (this.#closed) throw new Error(`guest: stopped watching before ${options.what ?? String(pattern)}`);
      if (Date.now() > deadline) {
        throw new Error(`guest: no ${options.what ?? String(pattern)} after ${Math.round(options.timeoutMs / 1000)} s\n--- console (last lines) ---\n${this.tail()}`);
      }
      await sleep(this.#options.pollMs ?? 50);
    }
  }

  /** Stops watching and closes the file. */
  close(): void {
    this.#closed = true;
    void this.#fh?.close().catch(() => {});
    this.#fh = undefined;
  }
}
