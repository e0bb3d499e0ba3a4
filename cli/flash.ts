/**
 * `cohesix flash` and `cohesix console`: argument parsing and the terminal
 * (confirmation prompt, progress bar, raw mode, signals); the work is in
 * flash/.
 *
 * `COHESIX_FLASH_ROOT=DIR` makes `flash` look at a fake machine under DIR
 * (`DIR/sys`, `DIR/proc/self/mounts`, `DIR/proc/swaps`, `DIR/dev`,
 * `DIR/root-dev`) instead of this one: the refusal tests use it, and no
 * system command runs then.
 * @module
 */
import { createInterface } from "node:readline";
import { resolve } from "node:path";
import { isatty } from "node:tty";
import {
  DEFAULT_MAX_BYTES,
  assessDisks,
  flashImage,
  formatCandidates,
  listDisks,
  progressBar,
  runConsole,
  systemView,
  type ConsoleInput,
  type Runner,
} from "../flash/index.ts";
import { str, UsageError, type Parsed } from "./args.ts";
import { defaultReleasePub } from "./paths.ts";

interface Io {
  readonly out: (text: string | Uint8Array) => void;
  readonly err: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
  readonly signal?: AbortSignal;
}

const UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** `512G`, `1TiB`, `64GB` (binary units), or bytes. */
export function parseSize(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`--${option} takes a size such as 512G or 1T, got ${JSON.stringify(text)}`);
  const n = Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  if (!(n > 0)) throw new UsageError(`--${option} must be more than 0`);
  return n;
}

/** Asks on the terminal (prompt on stderr); true for y or yes. */
function askOnTerminal(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  return new Promise((resolveAnswer) => {
    // Answer first: close() emits "close" at once, which stands for end of input (no).
    rl.question(question, (answer) => {
      resolveAnswer(/^\s*y(es)?\s*$/i.test(answer));
      rl.close();
    });
    rl.once("close", () => resolveAnswer(false));
    // Ctrl-C at the prompt is a no.
    rl.once("SIGINT", () => {
      resolveAnswer(false);
      rl.close();
    });
  });
}

/** On a fake machine nothing outside it is touched: commands are reported, not run. */
function fakeRunner(log: (text: string) => void): Runner {
  return async (file, args) => {
    log(`(fake system: not running ${[file, ...args].join(" ")})\n`);
    return { exitCode: 1, stderr: "not run on a fake system" };
  };
}

/** `cohesix flash FILE [--device DEV] [--yes] [--unmount] [--target-file PATH] [--pub FILE] [--max-size SIZE]`, or `--list`. */
export async function flash(p: Parsed, io: Io): Promise<void> {
  const fakeRoot = io.env.COHESIX_FLASH_ROOT;
  const view = fakeRoot ? systemView(resolve(fakeRoot)) : systemView();
  const maxSize = str(p, "max-size");
  const maxBytes = maxSize === undefined ? DEFAULT_MAX_BYTES : parseSize(maxSize, "max-size");
  const image = p.positionals[0];

  if (p.values.list === true) {
    if (image !== undefined) throw new UsageError("--list takes no image");
    io.out(formatCandidates(assessDisks(await listDisks(view), { imageBytes: 0, maxBytes })));
    return;
  }
  if (image === undefined) throw new UsageError("which image? give FILE (made by cohesix image), or --list to see the disks");
  const device = str(p, "device");
  const targetFile = str(p, "target-file");
  if (device !== undefined && targetFile !== undefined) throw new UsageError("--device and --target-file exclude each other");

  const interactive = isatty(0);
  const { signal, done } = processSignal(io.signal);
  try {
    await flashImage(resolve(image), {
      pubKeyFile: resolve(str(p, "pub") ?? defaultReleasePub(io.env)),
      ...(device === undefined ? {} : { device }),
      ...(targetFile === undefined ? {} : { targetFile }),
      yes: p.values.yes === true,
      unmount: p.values.unmount === true,
      maxBytes,
      view,
      ...(fakeRoot ? { run: fakeRunner(io.err) } : {}),
      ...(interactive ? { confirm: askOnTerminal } : {}),
      log: io.err,
      progress: progressBar({ write: io.err, tty: isatty(2), columns: process.stderr.columns || 80 }),
      signal,
    });
  } finally {
    done();
  }
}

/** Aborts on SIGTERM/SIGHUP/SIGINT so a terminal left in raw mode is restored; returns the signal and a cleanup. */
function processSignal(given: AbortSignal | undefined): { signal: AbortSignal; done: () => void } {
  if (given !== undefined) return { signal: given, done: () => {} };
  const ac = new AbortController();
  const onSignal = () => ac.abort();
  const names = ["SIGTERM", "SIGHUP", "SIGINT"] as const;
  for (const n of names) process.once(n, onSignal);
  return { signal: ac.signal, done: () => names.forEach((n) => process.removeListener(n, onSignal)) };
}

/** `cohesix console --port DEV [--baud 115200] [--log FILE] [--expect TEXT [--timeout S]]`. */
export async function consoleCommand(p: Parsed, io: Io): Promise<void> {
  const port = str(p, "port");
  if (port === undefined) throw new UsageError("--port is required: the serial device, e.g. /dev/ttyUSB0, or the /dev/pts/N QEMU printed for -serial pty");
  const baudText = str(p, "baud", "115200")!;
  const baudRate = Number(baudText);
  if (!/^\d+$/.test(baudText) || baudRate < 50 || baudRate > 4_000_000) throw new UsageError(`--baud takes a rate such as 115200, got ${JSON.stringify(baudText)}`);
  const expect = str(p, "expect");
  const timeoutText = str(p, "timeout");
  if (timeoutText !== undefined && expect === undefined) throw new UsageError("--timeout goes with --expect");
  const timeoutS = timeoutText === undefined ? 60 : Number(timeoutText);
  if (!(timeoutS > 0) || !Number.isFinite(timeoutS)) throw new UsageError(`--timeout takes seconds, got ${JSON.stringify(timeoutText)}`);
  const logFile = str(p, "log");

  // The keyboard: a terminal always; a pipe only for an interactive session.
  const stdinTty = isatty(0);
  const input = stdinTty || expect === undefined ? (process.stdin as ConsoleInput) : undefined;
  const { signal, done } = processSignal(io.signal);
  try {
    const result = await runConsole({
      port,
      baudRate,
      ...(logFile === undefined ? {} : { logFile: resolve(logFile) }),
      ...(expect === undefined ? {} : { expect, timeoutMs: timeoutS * 1000 }),
      ...(input === undefined ? {} : { input }),
      output: (bytes) => io.out(bytes),
      notice: io.err,
      signal,
    });
    if (result.end === "aborted" && io.signal === undefined) throw new Error(`interrupted before ${expect === undefined ? "the session ended" : JSON.stringify(expect) + " appeared"}`);
    if (result.end === "escape" && expect !== undefined) throw new Error(`stopped with Ctrl-] before ${JSON.stringify(expect)} appeared`);
    if (result.end === "escape") io.err(`\r\n[console closed]\r\n`);
    if (result.end === "expected") io.err(`\nfound ${JSON.stringify(expect)} on ${port}\n`);
  } finally {
    done();
  }
}
