/**
 * The queen shell's commands, over one attached session: `ls cat tail
 * write ctl spawn kill logs cd pwd help exit`. Each takes the command's
 * words, prints to the shell's output and throws on failure; the shell
 * prints the error as one line and goes on.
 * @module
 */
import { setTimeout as sleep } from "node:timers/promises";
import { InvalidError, type Fid } from "../nine-door/index.ts";
import { parse, UsageError, type OptionSpecs } from "./args.ts";
import type { CtlCounterStore } from "./ctl-counter.ts";
import { ctlPrinted, readWhole, sendCtl, type SendCtlOptions } from "./remote.ts";
import { rawAfter, resolvePath, type CommandLine } from "./shell-words.ts";
import { killCommand, printLog, spawnCommand, spawnRequestOf } from "./workers.ts";

/** `spawn`'s options in the shell (the verb's, without the remote ones). */
const SPAWN_OPTIONS: OptionSpecs = {
  ticks: { type: "string" },
  ttl: { type: "string" },
  ops: { type: "string" },
  lease: { type: "string" },
  restart: { type: "boolean" },
};

type Out = (text: string | Uint8Array) => void;

/** What one shell command works on. */
export interface ShellContext {
  readonly root: Fid;
  readonly key: Uint8Array;
  /** The session's signed-ctl counter (see ctl-counter.ts); without one each ctl reads /queen/ctr. */
  readonly counter?: CtlCounterStore;
  readonly out: Out;
  /** The working directory, absolute; `cd` changes it. */
  cwd: string;
  /** Aborted by Ctrl-C while a command runs (`tail -f`, `logs -f`). */
  signal?: AbortSignal;
}

/** `sendCtl`'s options for a shell command: the session's counter. */
function ctlOptions(ctx: ShellContext): SendCtlOptions {
  return ctx.counter ? { counter: ctx.counter } : {};
}

/** Raised by `exit`: the shell ends with this code. */
export class ShellExit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
    this.name = "ShellExit";
  }
}

interface ShellCommand {
  readonly usage: string;
  readonly summary: string;
  run(ctx: ShellContext, line: CommandLine, args: string[]): Promise<void>;
}

function options(args: readonly string[], specs: OptionSpecs, limits: { min?: number; max?: number }) {
  return parse(args, specs, limits);
}

function rel(path: string): string {
  return path.slice(1);
}

async function list(ctx: ShellContext, args: string[]): Promise<void> {
  const p = options(args, { long: { type: "boolean", short: "l" } }, { max: 1 });
  const path = resolvePath(ctx.cwd, p.positionals[0] ?? ".");
  const f = await ctx.root.walk(rel(path));
  try {
    if (!f.isDir) {
      ctx.out(`${path}\n`);
      return;
    }
    const entries = (await f.readdir()).sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      const name = `${e.name}${e.isDir ? "/" : ""}`;
      ctx.out(p.values.long ? `${e.isDir ? "d" : e.isAppend ? "a" : "-"} ${String(e.length).padStart(8)} ${name}\n` : `${name}\n`);
    }
  } finally {
    await f.clunk().catch(() => {});
  }
}

async function tail(ctx: ShellContext, args: string[]): Promise<void> {
  const p = options(args, { follow: { type: "boolean", short: "f" }, lines: { type: "string", short: "n" } }, { min: 1, max: 1 });
  const n = Number(p.values.lines ?? "10");
  if (!/^[0-9]+$/.test(String(p.values.lines ?? "10")) || !Number.isSafeInteger(n)) throw new UsageError(`tail: -n takes a number of lines ≥ 0, got ${JSON.stringify(p.values.lines)}`);
  const path = resolvePath(ctx.cwd, p.positionals[0]!);
  const f = await ctx.root.walk(rel(path));
  try {
    await f.open("r");
    const text = (await f.readAll(0)).toString("utf8");
    let offset = Buffer.byteLength(text);
    const all = text.split("\n");
    if (all[all.length - 1] === "") all.pop();
    const shown = n === 0 ? [] : all.slice(-n);
    if (shown.length > 0) ctx.out(shown.join("\n") + "\n");
    if (!p.values.follow) return;
    const signal = ctx.signal ?? new AbortController().signal;
    while (!signal.aborted) {
      const data = await f.read(offset, undefined, signal).catch((err: unknown) => {
        if (signal.aborted) return new Uint8Array(0);
        throw err;
      });
      if (data.length > 0) {
        ctx.out(data);
        offset += data.length;
        continue;
      }
      await sleep(250, undefined, { signal }).catch(() => {});
    }
  } finally {
    await f.clunk().catch(() => {});
  }
}

const commands: Record<string, ShellCommand> = {
  ls: { usage: "ls [-l] [PATH]", summary: "list a directory (directories end in /)", run: (ctx, _l, args) => list(ctx, args) },
  cat: {
    usage: "cat PATH...",
    summary: "print files",
    run: async (ctx, _l, args) => {
      const p = options(args, {}, { min: 1 });
      for (const path of p.positionals) ctx.out(await readWhole(ctx.root, resolvePath(ctx.cwd, path), "ls"));
    },
  },
  tail: { usage: "tail [-f] [-n N] PATH", summary: "the last lines; -f follows appends until Ctrl-C", run: (ctx, _l, args) => tail(ctx, args) },
  write: {
    usage: "write PATH TEXT",
    summary: "one write of TEXT (the rest of the line) to PATH",
    run: async (ctx, line, args) => {
      if (args.length < 2) throw new UsageError("write: usage: write PATH TEXT");
      const path = resolvePath(ctx.cwd, args[0]!);
      const text = rawAfter(line, 2);
      await ctx.root.with(rel(path), async (f) => {
        await f.open("w");
        await f.write(text);
      });
    },
  },
  ctl: {
    usage: "ctl JSON",
    summary: "one command to /queen/ctl, signed; prints the reply (the worker id for a spawn)",
    run: async (ctx, line, args) => {
      if (args.length === 0) throw new UsageError('ctl: usage: ctl JSON, e.g. ctl {"spawn":"heartbeat","ticks":10}');
      const printed = ctlPrinted(await sendCtl(ctx.root, ctx.key, rawAfter(line, 1), ctlOptions(ctx)));
      if (printed) ctx.out(`${printed}\n`);
    },
  },
  spawn: {
    usage: "spawn NAME [--ticks N] [--ttl S] [--ops N]",
    summary: "start a worker and print its id (--lease, --restart as in cohesix spawn)",
    run: async (ctx, _l, args) => {
      const command = spawnCommand(spawnRequestOf(options(args, SPAWN_OPTIONS, { min: 1, max: 1 })));
      ctx.out(`${ctlPrinted(await sendCtl(ctx.root, ctx.key, command, ctlOptions(ctx)))}\n`);
    },
  },
  kill: {
    usage: "kill WORKER",
    summary: "stop a worker (worker-7 or 7)",
    run: async (ctx, _l, args) => {
      const p = options(args, {}, { min: 1, max: 1 });
      ctx.out(`${ctlPrinted(await sendCtl(ctx.root, ctx.key, killCommand(p.positionals[0]!), ctlOptions(ctx)))}\n`);
    },
  },
  logs: {
    usage: "logs WORKER [-f]",
    summary: "a worker's stderr (/log/<id>.log); -f follows until Ctrl-C",
    run: async (ctx, _l, args) => {
      const p = options(args, { follow: { type: "boolean", short: "f" } }, { min: 1, max: 1 });
      await printLog(ctx.root, p.positionals[0]!, ctx.out, { follow: p.values.follow === true, ...(ctx.signal ? { signal: ctx.signal } : {}) });
    },
  },
  cd: {
    usage: "cd [PATH]",
    summary: "change the working directory (default /)",
    run: async (ctx, _l, args) => {
      const p = options(args, {}, { max: 1 });
      const path = resolvePath(ctx.cwd, p.positionals[0] ?? "/");
      const f = await ctx.root.walk(rel(path));
      const isDir = f.isDir;
      await f.clunk().catch(() => {});
      if (!isDir) throw new InvalidError(`${path} is not a directory`);
      ctx.cwd = path;
    },
  },
  pwd: {
    usage: "pwd",
    summary: "print the working directory",
    run: async (ctx, _l, args) => {
      options(args, {}, { max: 0 });
      ctx.out(`${ctx.cwd}\n`);
    },
  },
  help: {
    usage: "help",
    summary: "this list",
    run: async (ctx) => {
      const width = Math.max(...Object.values(commands).map((c) => c.usage.length));
      ctx.out(Object.values(commands).map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}\n`).join(""));
    },
  },
  exit: {
    usage: "exit [N]",
    summary: "leave the shell (Ctrl-D too)",
    run: async (_ctx, _l, args) => {
      const code = Number(args[0] ?? "0");
      if (!Number.isInteger(code) || code < 0 || code > 255) throw new UsageError(`exit: takes a code 0 to 255, got ${JSON.stringify(args[0])}`);
      throw new ShellExit(code);
    },
  },
};

/** The shell's command names, for completion and help. */
export const SHELL_COMMANDS: readonly string[] = Object.keys(commands);

/**
 * Runs one parsed command line in `ctx`.
 *
 * @throws {UsageError} an unknown command or bad arguments; {@link ShellExit} on `exit`; any 9P error.
 *
 * @example
 * ```ts
 * await runShellCommand(ctx, parseLine("ls /proc"));
 * ```
 */
export async function runShellCommand(ctx: ShellContext, line: CommandLine): Promise<void> {
  const [verb, ...rest] = line.words.map((w) => w.text);
  if (verb === undefined) return;
  const command = verb === "quit" ? commands.exit! : commands[verb];
  if (!command) throw new UsageError(`${verb}: unknown command; one of ${SHELL_COMMANDS.join(" ")}`);
  await command.run(ctx, line, rest);
}
