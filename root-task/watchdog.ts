/**
 * The hardware watchdog, fed from the root task's event loop: once
 * `/dev/watchdog` is open the device reboots the machine unless it is
 * written to within its timeout (i6300esb: 30 s by default), so a hung
 * root task or kernel reboots into U-Boot, which counts an A/B try. A
 * clean stop writes the magic `V` before closing, which disarms it
 * (Debian's kernel is built without `WATCHDOG_NOWAYOUT`).
 * @module
 */
import { open, stat, type FileHandle } from "node:fs/promises";

/** Default time between two feeds, ms: well inside the i6300esb's 30 s. */
export const DEFAULT_FEED_MS = 5_000;

/** Options of {@link Watchdog.open}. */
export interface WatchdogOptions {
  /** The device; default `/dev/watchdog`. */
  readonly device?: string;
  /** Time between feeds, ms; default {@link DEFAULT_FEED_MS}. */
  readonly feedMs?: number;
  /** Told when a feed fails (the machine may then reboot). */
  readonly onError?: (message: string) => void;
}

/**
 * An open, fed watchdog.
 *
 * @example
 * ```ts
 * const dog = await Watchdog.open(); // undefined without /dev/watchdog
 * // … serve …
 * await dog?.close(); // disarms it
 * ```
 */
export class Watchdog {
  readonly #handle: FileHandle;
  readonly #timer: NodeJS.Timeout;
  readonly #onError: (message: string) => void;
  #feeds = 0;
  #closed = false;

  private constructor(handle: FileHandle, options: WatchdogOptions) {
    this.#handle = handle;
    this.#onError = options.onError ?? (() => {});
    this.#feed();
    this.#timer = setInterval(() => this.#feed(), options.feedMs ?? DEFAULT_FEED_MS);
  }

  /**
   * Opens and arms the device, feeding it at once and then every
   * `feedMs`; resolves undefined when there is no such device.
   *
   * @example
   * ```ts
   * const dog = await Watchdog.open({ device: "/dev/watchdog", feedMs: 5000 });
   * ```
   */
  static async open(options: WatchdogOptions = {}): Promise<Watchdog | undefined> {
    const device = options.device ?? "/dev/watchdog";
    // Never create it: no device, no watchdog.
    if (!(await stat(device).catch(() => undefined))) return undefined;
    const handle = await open(device, "w").catch(() => undefined);
    return handle ? new Watchdog(handle, options) : undefined;
  }

  /** Feeds written so far. */
  get feeds(): number {
    return this.#feeds;
  }

  #feed(): void {
    if (this.#closed) return;
    this.#handle.write("\0").then(
      () => void this.#feeds++,
      (err: unknown) => this.#onError(`watchdog: feed failed: ${(err as Error).message}`),
    );
  }

  /**
   * Stops feeding without disarming: the device reboots the machine when
   * its timeout runs out (the last resort when `reboot -f` fails).
   *
   * @example
   * ```ts
   * dog.abandon();
   * ```
   */
  abandon(): void {
    this.#closed = true;
    clearInterval(this.#timer);
  }

  /**
   * Stops feeding and disarms the device (magic close `V`).
   *
   * @example
   * ```ts
   * await dog.close();
   * ```
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.abandon();
    clearInterval(this.#timer);
    await this.#handle.write("V").catch(() => undefined);
    await this.#handle.close().catch(() => undefined);
  }
}
