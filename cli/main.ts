/**
 * `cohesix`: the host command. Verbs are declared in verbs.ts (the one
 * place a new verb goes); this file finds the verb a command line names,
 * reads its options against the declaration, runs it and maps failures to
 * exit codes: 0 success; 1 a runtime error printed as one `class: message`
 * line (`not found:`, `permission:`, `invalid:`, `busy:`, `too big:`,
 * `closed:`, or `io:` for a failure outside 9P); 2 a usage error, one line
 * that ends with the verb's usage and a pointer to its help.
 * @module
 */
import { readFileSync } from "node:fs";
import { isUsageError, UsageError, type Parsed } from "./args.ts";
import { globalUsage, markdownTable, verbHelp, walk, type Reached } from "./help.ts";
import { closest, parseVerb, synopsis, type Io, type Verb } from "./verb.ts";
import { VERBS } from "./verbs.ts";

export type { Io } from "./verb.ts";

/**
 * The version in the package's package.json.
 *
 * @example
 * ```ts
 * version(); // "0.1.0"
 * ```
 */
export function version(): string {
  // cli/main.ts, dist/cohesix.mjs and dist/cli/chunk-*.mjs sit one or two folders below it.
  for (const up of ["../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "cohesix" && typeof pkg.version === "string") return pkg.version;
    } catch {
      // not this folder
    }
  }
  return "unknown";
}

/** The usage text. */
export function usage(): string {
  return globalUsage(VERBS);
}

/** The verb `words` name (following sub-verbs), and the words left for it. */
function find(words: readonly string[]): { reached: Reached; rest: readonly string[] } | { unknown: string; among: readonly Verb[]; path: readonly string[] } {
  let list: readonly Verb[] = VERBS;
  const path: string[] = [];
  let verb: Verb | undefined;
  let i = 0;
  for (; i < words.length; i++) {
    const next = list.find((v) => v.name === words[i]);
    if (!next) break;
    verb = next;
    path.push(next.name);
    if (!next.subverbs) {
      i++;
      break;
    }
    list = next.subverbs;
  }
  if (!verb) return { unknown: words[0] ?? "", among: VERBS, path: [] };
  // A word after a verb with sub-verbs that takes no arguments itself can only be a sub-verb.
  const takesArgs = verb.run !== undefined && (verb.args ?? []).length > 0;
  if (verb.subverbs && !takesArgs && i < words.length && !words[i]!.startsWith("-")) return { unknown: words[i]!, among: verb.subverbs, path };
  return { reached: { verb, path }, rest: words.slice(i) };
}

function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === "--") return false;
    if (a === "--help" || a === "-h") return true;
  }
  return false;
}

/** `cohesix help [COMMAND…] [--markdown]`. */
export async function help(p: Parsed, io: Io): Promise<void> {
  if (p.values.markdown === true) {
    io.out(markdownTable(VERBS));
    return;
  }
  if (p.positionals.length === 0) {
    io.out(usage());
    return;
  }
  const found = find(p.positionals);
  if ("unknown" in found) throw unknownVerb(found);
  io.out(verbHelp(found.reached));
}

function unknownVerb(u: { unknown: string; among: readonly Verb[]; path: readonly string[] }): UsageError {
  const names = u.among.filter((v) => !v.hidden).map((v) => v.name);
  const near = closest(u.unknown, names);
  const what = u.path.length ? `unknown ${u.path.join(" ")} verb` : "unknown command";
  const hint = near ? `: did you mean ${[...u.path, near].join(" ")}?` : u.path.length ? ` (one of ${names.join(", ")})` : "";
  return new UsageError(`${what} ${JSON.stringify(u.unknown)}${hint}`);
}

/**
 * Runs one command line; resolves with the exit code.
 *
 * @example
 * ```ts
 * const code = await main(["ls", "/"], { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t), env: process.env });
 * ```
 */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  const [first] = argv;
  if (first === undefined) {
    io.err(usage());
    return 2;
  }
  if (first === "--version" || first === "-V") {
    io.out(`cohesix ${version()}\n`);
    return 0;
  }
  if (first === "--help" || first === "-h") {
    io.out(usage());
    return 0;
  }
  const found = find(argv);
  if ("unknown" in found) {
    const err = unknownVerb(found);
    const where = found.path.length ? found.path.join(" ") : "COMMAND";
    io.err(`cohesix: ${err.message} (usage: cohesix ${found.path.length ? synopsis(VERBS.find((v) => v.name === found.path[0])!, found.path) : `${where} [OPTIONS]`}; see 'cohesix help${found.path.length ? ` ${where}` : ""}')\n`);
    return 2;
  }
  const { reached, rest } = found;
  const name = reached.path.join(" ");
  if (wantsHelp(rest)) {
    io.out(verbHelp(reached));
    return 0;
  }
  try {
    if (!reached.verb.run) {
      const subs = (reached.verb.subverbs ?? []).map((s) => s.name);
      throw new UsageError(`missing the verb: ${subs.join(", ")}`);
    }
    const p = parseVerb(rest, reached.verb);
    return (await reached.verb.run(p, io)) ?? 0;
  } catch (err) {
    if (isUsageError(err)) {
      io.err(`cohesix ${name}: ${oneLine(err.message)} (usage: cohesix ${synopsis(reached.verb, reached.path)}; see 'cohesix ${name} --help')\n`);
      return 2;
    }
    // A NineError (its message starts with its class); matched by shape so
    // that this file does not load the 9P library for verbs that don't use it.
    if (err instanceof Error && typeof (err as { errorClass?: unknown }).errorClass === "string") {
      io.err(`${oneLine(err.message)}\n`);
      return 1;
    }
    const message = err instanceof Error ? err.message : String(err);
    io.err(`io: ${oneLine(message)}\n`);
    return 1;
  }
}

/** Errors are one line: a multi-line message (OpenSSL's, a child's stderr) is joined. */
function oneLine(text: string): string {
  return text.trim().split(/\s*\n\s*/).join("; ");
}

/** Every verb and sub-verb with its path, for tests and tools. */
export function allVerbs(): Reached[] {
  return walk(VERBS);
}
