/**
 * A progress bar for long writes: on a terminal one line redrawn in place
 * (at most every `intervalMs`, never wider than the terminal); elsewhere a
 * plain line at every tenth of the work, so logs stay readable.
 *
 * @example
 * ```ts
 * const bar = progressBar({ write: (s) => process.stderr.write(s), tty: process.stderr.isTTY, columns: process.stderr.columns });
 * bar.update("writing", 50 << 20, 200 << 20);
 * bar.finish("writing", 200 << 20);
 * ```
 * @module
 */
import { formatBytes } from "./devices.ts";

/** Where and how to draw. */
export interface ProgressOptions {
  readonly write: (text: string) => void;
  /** Redraw one line in place (a terminal) or print plain lines. */
  readonly tty: boolean;
  /** Terminal width; default 80. */
  readonly columns?: number;
  /** Least time between redraws on a terminal; default 100 ms. */
  readonly intervalMs?: number;
  /** Clock in ms; tests pass their own. */
  readonly now?: () => number;
}

/** A bar for one or more phases (`writing`, `verifying`). */
export interface ProgressBar {
  update(label: string, done: number, total: number): void;
  /** Ends the phase with a summary line: size, time and rate. */
  finish(label: string, total: number): void;
}

function rate(bytes: number, ms: number): string {
  return ms > 0 ? `${formatBytes(Math.round((bytes * 1000) / ms))}/s` : "-";
}

/** Makes a {@link ProgressBar}. */
export function progressBar(options: ProgressOptions): ProgressBar {
  const now = options.now ?? (() => performance.now());
  const interval = options.intervalMs ?? 100;
  const columns = Math.max(20, options.columns ?? 80);
  let phase = "";
  let phaseStart = 0;
  let lastDraw = -Infinity;
  let lastTenth = -1;
  let drawn = false;

  const start = (label: string) => {
    if (label === phase) return;
    phase = label;
    phaseStart = now();
    lastDraw = -Infinity;
    lastTenth = -1;
  };

  return {
    update(label, done, total) {
      start(label);
      const t = now();
      const pct = total > 0 ? Math.min(100, Math.floor((done * 100) / total)) : 100;
      if (!options.tty) {
        const tenth = Math.floor(pct / 10);
        if (tenth === lastTenth || pct === 100) return;
        lastTenth = tenth;
        options.write(`${label}: ${pct}% (${formatBytes(done)} of ${formatBytes(total)})\n`);
        return;
      }
      if (t - lastDraw < interval && done < total) return;
      lastDraw = t;
      const text = ` ${String(pct).padStart(3)}%  ${formatBytes(done)}/${formatBytes(total)}  ${rate(done, t - phaseStart)}`;
      const head = `${label} `;
      const barWidth = columns - 1 - head.length - text.length - 2;
      let line: string;
      if (barWidth >= 10) {
        const filled = Math.round((barWidth * pct) / 100);
        line = `${head}[${"#".repeat(filled)}${"-".repeat(barWidth - filled)}]${text}`;
      } else {
        line = `${head}${text.trim()}`.slice(0, columns - 1);
      }
      options.write(`\r${line}`);
      drawn = true;
    },
    finish(label, total) {
      start(label);
      const ms = now() - phaseStart;
      const line = `${label}: ${formatBytes(total)} in ${(ms / 1000).toFixed(1)} s (${rate(total, ms)})`;
      // The summary may wrap; it is the line that stays.
      if (options.tty && drawn) options.write(`\r${line.padEnd(columns - 1)}\n`);
      else options.write(`${line}\n`);
      drawn = false;
      phase = "";
    },
  };
}
