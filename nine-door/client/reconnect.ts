/**
 * A client that redials when its connection drops: used for remote mounts
 * (the GPU bridge may restart) and long-running CLI commands (`tail -f`).
 * @module
 */
import type { Duplex } from "node:stream";
import { ClosedError } from "../errors.ts";
import { NineClient, type ConnectOptions, type Fid } from "./client.ts";

/** Options of `ReconnectingClient`. */
export interface ReconnectOptions {
  /** Opens a fresh byte stream to the server. */
  dial(signal: AbortSignal): Promise<Duplex>;
  /** What to attach with after every (re)connect. */
  readonly attach: { readonly uname?: string; readonly aname: string };
  readonly connect?: ConnectOptions;
  /** First retry delay; doubles up to `maxDelayMs`. Default 100 ms. */
  readonly initialDelayMs?: number;
  /** Default 5 s. */
  readonly maxDelayMs?: number;
  /** Called on every state change, e.g. to mark an appliance DEGRADED. */
  onState?(state: "connected" | "disconnected", detail: string): void;
}

/**
 * Keeps one attached connection alive, redialling with exponential backoff.
 *
 * @example
 * ```ts
 * const rc = new ReconnectingClient({ dial: () => dial("tcp!127.0.0.1!5641"), attach: { aname: ticket } });
 * const info = await rc.run((root) => root.readText("GPU-0/info"));
 * ```
 */
export class ReconnectingClient {
  readonly #options: ReconnectOptions;
  readonly #stop = new AbortController();
  #current: Promise<{ client: NineClient; root: Fid }> | undefined;
  #connected = false;

  constructor(options: ReconnectOptions) {
    this.#options = options;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** The attach root of a live connection, dialling (with retries) if needed. */
  async root(): Promise<Fid> {
    if (this.#stop.signal.aborted) throw new ClosedError("client closed");
    this.#current ??= this.#connect();
    return (await this.#current).root;
  }

  /**
   * Runs `fn` on the attach root. If the connection is lost while it runs,
   * reconnects and runs it once more; other errors pass through.
   */
  async run<T>(fn: (root: Fid) => Promise<T>): Promise<T> {
    const root = await this.root();
    try {
      return await fn(root);
    } catch (err) {
      if (!root.client.closed) throw err;
      return fn(await this.root());
    }
  }

  /** Stops redialling and closes the connection. */
  close(): void {
    this.#stop.abort();
    void this.#current?.then((c) => c.client.close(), () => {});
    this.#current = undefined;
  }

  async #connect(): Promise<{ client: NineClient; root: Fid }> {
    const o = this.#options;
    let delay = o.initialDelayMs ?? 100;
    for (;;) {
      const signal = this.#stop.signal;
      try {
        const conn = await o.dial(signal);
        const client = await NineClient.connect(conn, { ...o.connect, signal });
        const root = await client.attach(o.attach);
        client.onClose((err) => {
          this.#connected = false;
          this.#current = undefined;
          o.onState?.("disconnected", err.message);
        });
        this.#connected = true;
        o.onState?.("connected", "attached");
        return { client, root };
      } catch (err) {
        if (signal.aborted) throw new ClosedError("client closed");
        o.onState?.("disconnected", err instanceof Error ? err.message : String(err));
        // A refusal (bad ticket) will not heal by retrying.
        if (err instanceof Error && err.message.startsWith("permission")) {
          this.#current = undefined;
          throw err;
        }
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.#stop.signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
      });
      delay = Math.min(delay * 2, o.maxDelayMs ?? 5000);
    }
  }
}
