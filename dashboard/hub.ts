/**
 * Fan-out of live events to the open pages, one Server-Sent Events stream
 * per page. A page that reads too slowly is dropped once its stream holds
 * `stream_buffer_bytes` unsent, never buffered without end; it reconnects
 * and starts over from a fresh `hello`.
 * @module
 */
import type { ServerResponse } from "node:http";
import type { DashEvent } from "./model.ts";
import type { DashboardLimits } from "./limits.ts";

/** The text of one event on the wire. */
export function sseFrame(event: DashEvent): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/**
 * The open event streams.
 *
 * @example
 * ```ts
 * const hub = new EventHub({ limits: DEFAULT_LIMITS });
 * hub.open(res, helloEvent);
 * hub.publish({ type: "log", app: "tcp!127.0.0.1!5640", lines: ["spawned worker-1"] });
 * ```
 */
export class EventHub {
  readonly #limits: DashboardLimits;
  readonly #streams = new Set<ServerResponse>();
  readonly #keepalive: NodeJS.Timeout;
  /** Streams dropped for reading too slowly, since start. */
  dropped = 0;

  constructor(options: { limits: DashboardLimits }) {
    this.#limits = options.limits;
    // A comment now and then finds the pages that went away without a word.
    this.#keepalive = setInterval(() => {
      for (const res of this.#streams) this.#write(res, ": keepalive\n\n");
    }, 15_000);
    this.#keepalive.unref();
  }

  /** How many pages listen. */
  get size(): number {
    return this.#streams.size;
  }

  /** Whether one more stream fits under `max_streams`. */
  get full(): boolean {
    return this.#streams.size >= this.#limits.max_streams;
  }

  /** Starts a stream on `res` with `first` (the page's starting state). */
  open(res: ServerResponse, first: DashEvent): void {
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no" });
    res.flushHeaders();
    this.#streams.add(res);
    res.on("close", () => this.#streams.delete(res));
    this.#write(res, `retry: 1000\n\n${sseFrame(first)}`);
  }

  /** Sends `event` to every page. */
  publish(event: DashEvent): void {
    if (this.#streams.size === 0) return;
    const frame = sseFrame(event);
    for (const res of this.#streams) this.#write(res, frame);
  }

  /** Ends every stream. */
  close(): void {
    clearInterval(this.#keepalive);
    for (const res of this.#streams) res.destroy();
    this.#streams.clear();
  }

  #write(res: ServerResponse, text: string): void {
    if (res.writableLength + text.length > this.#limits.stream_buffer_bytes) {
      this.dropped++;
      this.#streams.delete(res);
      res.destroy();
      return;
    }
    res.write(text);
  }
}
