/**
 * What a verb of the `cohesix` command is made of, and how its command line
 * is read from that declaration: the arguments, the options with their
 * types and defaults, a summary, a description and examples. Help, the
 * global usage, "did you mean", completion and the README's command table
 * are all derived from the same {@link Verb} (see verbs.ts for the table).
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError, type Parsed } from "./args.ts";

/** Where a verb writes; tests pass their own. */
export interface Io {
  readonly out: (text: string | Uint8Array) => void;
  readonly err: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
  /** Aborts long-running commands (serve, tail -f). */
  readonly signal?: AbortSignal;
  /** stderr is a terminal: long verbs draw progress there. Default false (quiet). */
  readonly tty?: boolean;
  /** Width of that terminal; default 80. */
  readonly columns?: number;
}

/** One option of a verb. */
export interface OptionDecl {
  readonly type: "string" | "boolean";
  /** One letter, e.g. `l` for `-l`. */
  readonly short?: string;
  /** The option may repeat; its value is then an array. */
  readonly multiple?: boolean;
  /** The value's placeholder in help, e.g. `DIAL` (string options). */
  readonly value?: string;
  /** One line: what it does. */
  readonly help: string;
  /** A default the parser fills in when the option is absent (shown in help). */
  readonly default?: string;
  /** A default that depends on context, shown in help only (e.g. "from cohesix.config.json, else aarch64-virt"). */
  readonly defaultNote?: string;
  /** The only values accepted; anything else is a usage error naming them. */
  readonly choices?: readonly string[];
  /** The value must be a whole number of at least this. */
  readonly min?: number;
  /** Shown in the synopsis as needed. The verb enforces it, since it may have a fallback (a project's config). */
  readonly required?: boolean;
  /** Environment variable read when the option is absent (help only). */
  readonly env?: string;
}

/** One positional argument. */
export interface ArgDecl {
  /** Upper case, as shown: `PATH`. */
  readonly name: string;
  readonly help: string;
  readonly optional?: boolean;
  /** Takes the rest of the arguments (last argument only). */
  readonly variadic?: boolean;
}

/** A verb: its declaration and, when it runs itself, its handler. */
export interface Verb {
  /** The verb as typed; a sub-verb's name is its own word (`verify` under `image`). */
  readonly name: string;
  /** One line, shown in the global usage and first in help. */
  readonly summary: string;
  /** A few lines (a paragraph), shown in help and in the README's table. */
  readonly description: string;
  readonly args?: readonly ArgDecl[];
  readonly options?: Readonly<Record<string, OptionDecl>>;
  /** At least one command line, starting with `cohesix`, for a verb that runs. */
  readonly examples?: readonly string[];
  /** A synopsis in place of the one made from args and options. */
  readonly synopsis?: string;
  /** Sub-verbs (`vm pause`, `log show`): the first argument picks one. */
  readonly subverbs?: readonly Verb[];
  /** Left out of the usage, the table and completion (e.g. `help --markdown`). */
  readonly hidden?: boolean;
  /**
   * Runs the verb; loads its implementation lazily so other verbs don't pay
   * for it. Resolves with nothing (exit 0), or with its own exit code (`sh`).
   */
  readonly run?: (p: Parsed, io: Io) => Promise<void | number>;
}

/**
 * The synopsis of a verb: `ls [PATH] [OPTIONS]`, `console --port DEV [OPTIONS]`.
 *
 * @example
 * ```ts
 * synopsis({ name: "ls", summary: "", description: "", args: [{ name: "PATH", help: "", optional: true }] }, ["ls"]); // "ls [PATH]"
 * ```
 */
export function synopsis(verb: Verb, path: readonly string[]): string {
  if (verb.synopsis !== undefined) return verb.synopsis;
  const words = [...path];
  if (verb.subverbs && !verb.run) words.push(verb.subverbs.filter((s) => !s.hidden).map((s) => s.name).join("|"));
  const options = Object.entries(verb.options ?? {});
  for (const [name, o] of options) if (o.required) words.push(`--${name} ${o.value ?? "VALUE"}`);
  for (const a of verb.args ?? []) {
    const shown = a.variadic ? `${a.name}...` : a.name;
    words.push(a.optional ? `[${shown}]` : shown);
  }
  if (options.some(([, o]) => !o.required)) words.push("[OPTIONS]");
  return words.join(" ");
}

/** `--name` or `-x, --name`, as in help and errors. */
export function optionLabel(name: string, o: OptionDecl): string {
  return o.short ? `-${o.short}, --${name}` : `--${name}`;
}

/**
 * Reads a verb's command line against its declaration: unknown options,
 * missing or extra arguments and bad values are usage errors that name
 * what is wrong (`missing PATH`, `unknown option --bgus (did you mean --board?)`).
 *
 * @example
 * ```ts
 * const p = parseVerb(["-n", "5", "/log/queen.log"], tailVerb);
 * p.values.lines; // "5"
 * ```
 */
export function parseVerb(argv: readonly string[], verb: Verb): Parsed {
  const decls = verb.options ?? {};
  const specs: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {};
  for (const [name, o] of Object.entries(decls)) {
    specs[name] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) };
  }
  const args = joinNegativeValues(argv, decls);
  for (const token of args) {
    if (token === "--") break;
    const unknown = unknownOption(token, decls);
    if (unknown !== undefined) {
      const near = closest(unknown.replace(/^-+/, ""), Object.keys(decls));
      throw new UsageError(`unknown option ${unknown}${near ? ` (did you mean --${near}?)` : ""}`);
    }
  }
  let parsed: Parsed;
  try {
    parsed = parseArgs({ args, options: specs, allowPositionals: true, strict: true }) as Parsed;
  } catch (err) {
    throw new UsageError(cleanParseError(err as Error & { code?: string }, decls));
  }
  const values = parsed.values as Record<string, string | boolean | string[] | boolean[] | undefined>;
  for (const [name, o] of Object.entries(decls)) {
    const v = values[name];
    if (v === undefined) {
      if (o.default !== undefined) values[name] = o.type === "boolean" ? o.default === "true" : o.default;
      continue;
    }
    for (const one of Array.isArray(v) ? v : [v]) {
      if (typeof one !== "string") continue;
      const label = o.short ? `-${o.short}/--${name}` : `--${name}`;
      if (o.choices && !o.choices.includes(one)) throw new UsageError(`${label} must be ${orList(o.choices)}, got ${JSON.stringify(one)}`);
      if (o.min !== undefined && !(/^-?\d+$/.test(one) && Number.isSafeInteger(Number(one)) && Number(one) >= o.min)) {
        throw new UsageError(`${label} must be a whole number of at least ${o.min}, got ${JSON.stringify(one)}`);
      }
    }
  }
  const decl = verb.args ?? [];
  const n = parsed.positionals.length;
  const needed = decl.filter((a) => !a.optional);
  if (n < needed.length) throw new UsageError(`missing ${needed.slice(n).map((a) => a.name).join(" ")}`);
  if (!decl.some((a) => a.variadic) && n > decl.length) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[decl.length])}`);
  return parsed;
}

/** `a, b or c`. */
export function orList(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} or ${items[items.length - 1]}`;
}

/** `-n -3` reads as an option and its value, which parseArgs would refuse as ambiguous. */
function joinNegativeValues(argv: readonly string[], decls: Readonly<Record<string, OptionDecl>>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const t = argv[i]!;
    const next = argv[i + 1];
    const name = t.startsWith("--") ? t.slice(2) : t.length === 2 && t[0] === "-" ? Object.keys(decls).find((k) => decls[k]!.short === t[1]) : undefined;
    if (t === "--") {
      out.push(...argv.slice(i));
      break;
    }
    if (name !== undefined && decls[name]?.type === "string" && next !== undefined && /^-\d/.test(next)) {
      out.push(`--${name}=${next}`);
      i++;
      continue;
    }
    out.push(t);
  }
  return out;
}

/** The option a token names when the verb has no such option. */
function unknownOption(token: string, decls: Readonly<Record<string, OptionDecl>>): string | undefined {
  if (token.startsWith("--")) {
    const name = token.slice(2).split("=")[0]!;
    return name in decls ? undefined : `--${name}`;
  }
  if (token.startsWith("-") && token.length > 1 && !/^-\d/.test(token)) {
    const shorts = new Set(Object.values(decls).map((o) => o.short));
    for (const ch of token.slice(1)) {
      if (!shorts.has(ch)) return `-${ch}`;
      const name = Object.keys(decls).find((k) => decls[k]!.short === ch)!;
      if (decls[name]!.type === "string") return undefined; // the rest is its value
    }
  }
  return undefined;
}

/** parseArgs' own messages say how to quote; ours say what is missing. */
function cleanParseError(err: Error & { code?: string }, decls: Readonly<Record<string, OptionDecl>>): string {
  const named = /'(-[^' ,]*)/.exec(err.message)?.[1];
  const long = named?.startsWith("--") ? named.slice(2) : Object.keys(decls).find((k) => `-${decls[k]!.short}` === named);
  if (err.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && long !== undefined) {
    const o = decls[long];
    return o?.type === "boolean" ? `--${long} takes no value` : `${o?.short ? `-${o.short}/` : ""}--${long} needs a value${o?.value ? ` (${o.value})` : ""}`;
  }
  return err.message.split("\n")[0]!.replace(/\. To specify.*$/, "");
}

/** Edit distance (insert, delete, substitute, swap two neighbours). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The candidate nearest to `word`, if near enough to be a typo (at most 2
 * edits, and fewer than half its letters), else undefined.
 *
 * @example
 * ```ts
 * closest("lss", ["ls", "cat", "tail"]); // "ls"
 * ```
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = editDistance(word, c);
    if (dist < bestD) [best, bestD] = [c, dist];
  }
  return best !== undefined && bestD <= 2 && bestD < Math.max(2, Math.ceil(word.length / 2)) ? best : undefined;
}
