/**
 * `cohesix sh`: the queen shell, over one 9P session, on node:readline.
 *
 * - Interactive (stdin is a terminal): a prompt with the appliance and its
 *   lifecycle (`cohesix tcp!127.0.0.1!5640 ONLINE /> `), tab completion of
 *   command names and of paths from the namespace (`/wo` → `/worker/`),
 *   history in `~/.config/cohesix/history` (the config folder of
 *   `cli/paths.ts`; last {@link HISTORY_LINES} lines). Ctrl-C stops a
 *   following `tail -f`/`logs -f` or clears the line; Ctrl-D or `exit` leaves.
 * - Scripts: `cohesix sh -c 'cmd; cmd'`, or commands on stdin when it is
 *   not a terminal, one per line or separated by `;`.
 *
 * A failed command prints one line (`class: message`) and the shell goes
 * on. A script exits 1 at its end when any command failed (0 otherwise, or
 * the code given to `exit N`); the interactive shell exits 0. A lost
 * connection ends the shell at once with exit 1.
 * @module
 */
import { appendFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { NineError, type Fid } from "../nine-door/index.ts";
import { UsageError, type Parsed } from "./args.ts";
import { configDir } from "./paths.ts";
import { SESSION_TICKET_TTL_S, connectQueen, ctlCounterOf, type QueenSession } from "./remote.ts";
import { SHELL_COMMANDS, ShellExit, runShellCommand, type ShellContext } from "./shell-commands.ts";
import { completionTarget, parseLine, splitCommands, words } from "./shell-words.ts";
import type { Io } from "./verb.ts";

interface ShellIo extends Io {
  /** Default process.stdin / process.stdout. */
  readonly input?: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly output?: NodeJS.WritableStream;
}

/** History lines kept in the history file. */
export const HISTORY_LINES = 1000;

/**
 * The shell's history file: `<config dir>/history`.
 *
 * @example
 * ```ts
 * historyFile({ XDG_CONFIG_HOME: "/tmp/cfg" }); // "/tmp/cfg/cohesix/history"
 * ```
 */
export function historyFile(env: NodeJS.ProcessEnv): string {
  return join(configDir(env), "history");
}

/** The message of a failed command: one line. */
function failure(verb: string | undefined, err: unknown): string {
  if (err instanceof NineError) return err.message.split("\n")[0]!;
  const message = err instanceof Error ? err.message.split("\n")[0]! : String(err);
  if (err instanceof UsageError) return verb && !message.startsWith(`${verb}:`) ? `${verb}: ${message}` : message;
  if (/^(invalid|io): /.test(message)) return message;
  return `io: ${message}`;
}

/** Runs one command, printing a failure as one line; resolves false when it failed. */
async function runOne(ctx: ShellContext, text: string, err: (t: string) => void): Promise<boolean> {
  let verb: string | undefined;
  try {
    const line = parseLine(text);
    verb = line.words[0]?.text;
    await runShellCommand(ctx, line);
    return true;
  } catch (e) {
    if (e instanceof ShellExit) throw e;
    err(`${failure(verb, e)}\n`);
    return false;
  }
}

class ConnectionLost extends Error {}

/** Throws when the session's connection is gone: nothing more can work. */
function checkAlive(session: QueenSession): void {
  if (session.client.closed) throw new ConnectionLost(`closed: the connection to ${session.address.dialString} was lost`);
}

/** Runs a script's commands in order; resolves with the exit code. */
async function runScript(ctx: ShellContext, session: QueenSession, commands: AsyncIterable<string> | Iterable<string>, err: (t: string) => void): Promise<number> {
  let failed = false;
  try {
    for await (const chunk of commands) {
      for (const text of splitCommands(chunk)) {
        if (!(await runOne(ctx, text, err))) failed = true;
        checkAlive(session);
      }
    }
  } catch (e) {
    if (e instanceof ShellExit) return e.code;
    if (e instanceof ConnectionLost) {
      err(`${e.message}\n`);
      return 1;
    }
    err(`${failure(undefined, e)}\n`);
    return 1;
  }
  return failed ? 1 : 0;
}

/** The prompt: `cohesix ADDR LIFECYCLE CWD> `. */
async function promptOf(session: QueenSession, cwd: string): Promise<string> {
  const state = await session.root.readText("proc/lifecycle/state").then(
    (s) => s.trim() || "?",
    () => "?",
  );
  return `cohesix ${session.address.dialString} ${state} ${cwd}> `;
}

/**
 * Completes the word under the cursor: a command name for the first word,
 * else a path from the namespace. Resolves readline's `[candidates, word]`.
 *
 * @example
 * ```ts
 * await complete(root, "/", "ls /wo"); // [["/worker/"], "/wo"]
 * ```
 */
export async function complete(root: Fid, cwd: string, line: string): Promise<[string[], string]> {
  let ws: string[];
  try {
    ws = words(line).map((w) => w.text);
  } catch {
    return [[], ""];
  }
  const endsInSpace = line === "" || /\s$/.test(line);
  const partial = endsInSpace ? "" : (ws[ws.length - 1] ?? "");
  const index = endsInSpace ? ws.length : ws.length - 1;
  if (index === 0) return [SHELL_COMMANDS.filter((c) => c.startsWith(partial)).map((c) => `${c} `), partial];
  const { dir, keep, prefix } = completionTarget(cwd, partial);
  try {
    const entries = await root.with(dir.slice(1), (f) => (f.isDir ? f.readdir() : Promise.resolve([])));
    const names = entries
      .filter((e) => e.name.startsWith(prefix))
      .map((e) => `${keep}${e.name}${e.isDir ? "/" : ""}`)
      .sort();
    return [names, partial];
  } catch {
    return [[], partial];
  }
}

async function loadHistory(file: string): Promise<string[]> {
  const text = await readFile(file, "utf8").catch(() => "");
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const kept = lines.slice(-HISTORY_LINES);
  if (kept.length < lines.length) await writeFile(file, kept.join("\n") + "\n", { mode: 0o600 }).catch(() => {});
  // readline keeps history newest first.
  return kept.reverse();
}

/** The interactive shell; resolves with the exit code. */
async function interactive(ctx: ShellContext, session: QueenSession, io: ShellIo): Promise<number> {
  const file = historyFile(io.env);
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const history = await loadHistory(file);
  let running: AbortController | undefined;
  io.out("cohesix queen shell: type help for the commands, exit or Ctrl-D to leave\n");
  const first = await promptOf(session, ctx.cwd);
  const rl: Interface = createInterface({
    prompt: first,
    input: io.input ?? process.stdin,
    output: io.output ?? process.stdout,
    terminal: true,
    history,
    historySize: HISTORY_LINES,
    removeHistoryDuplicates: true,
    tabSize: 4,
    completer: (line: string, callback: (err: Error | null, result: [string[], string]) => void) => {
      complete(session.root, ctx.cwd, line).then(
        (r) => callback(null, r),
        () => callback(null, [[], line]),
      );
    },
  });
  rl.on("SIGINT", () => {
    if (running) running.abort();
    else {
      rl.write(null, { ctrl: true, name: "u" });
      (io.output ?? process.stdout).write("^C\n");
      rl.prompt();
    }
  });
  // Keys typed ahead stay where they are: the cursor is preserved.
  rl.prompt(true);
  try {
    for await (const text of rl) {
      if (text.trim() !== "") await appendFile(file, `${text.replace(/\n/g, " ")}\n`, { mode: 0o600 }).catch(() => {});
      let commands: string[];
      try {
        commands = splitCommands(text);
      } catch (e) {
        io.err(`${failure(undefined, e)}\n`);
        commands = [];
      }
      for (const one of commands) {
        running = new AbortController();
        try {
          ctx.signal = running.signal;
          await runOne(ctx, one, io.err);
        } finally {
          running = undefined;
          delete ctx.signal;
        }
        checkAlive(session);
      }
      rl.setPrompt(await promptOf(session, ctx.cwd));
      rl.prompt(true);
    }
  } catch (e) {
    if (e instanceof ShellExit) return e.code;
    if (e instanceof ConnectionLost) {
      io.err(`${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    rl.close();
  }
  io.out("\n");
  return 0;
}

/**
 * `sh [-c SCRIPT]`: the queen shell over one session (see the module
 * comment). Resolves with the exit code.
 *
 * @example
 * ```ts
 * await sh(parseVerb(["-c", "ls /proc; cat /proc/lifecycle/state"], shVerb), io); // 0
 * ```
 */
export async function sh(p: Parsed, io: ShellIo): Promise<number> {
  const script = p.values.command;
  if (script !== undefined && typeof script !== "string") throw new UsageError("-c takes a script, e.g. -c 'ls /; cat /proc/boot'");
  const input = io.input ?? process.stdin;
  const session = await connectQueen(p, io.env, { ttlS: SESSION_TICKET_TTL_S });
  const ctx: ShellContext = { root: session.root, key: session.key, counter: ctlCounterOf(io.env, session), out: io.out, cwd: "/" };
  try {
    if (script !== undefined) return await runScript(ctx, session, [script], io.err);
    if (input.isTTY !== true) {
      const rl = createInterface({ input, terminal: false });
      try {
        return await runScript(ctx, session, rl, io.err);
      } finally {
        rl.close();
      }
    }
    return await interactive(ctx, session, io);
  } finally {
    session.client.close();
  }
}
