/**
 * Command-line helpers shared by every `cohesix` command: one `UsageError`
 * (exit 2), typed accessors of parsed values, and `parse`, a thin wrapper
 * over node:util's parseArgs (verbs are parsed from their declaration by
 * verb.ts's parseVerb; `parse` serves tests and tools).
 * @module
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";

/** A usage mistake: the CLI prints it with the command's usage and exits 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Whether `err` is a {@link UsageError}, also one thrown by a verb's own
 * bundle (dist/cli/X.mjs carries its own copy of this class).
 *
 * @example
 * ```ts
 * isUsageError(new UsageError("missing PATH")); // true
 * ```
 */
export function isUsageError(err: unknown): err is UsageError {
  return err instanceof Error && err.name === "UsageError";
}

/** Option specs in node:util's parseArgs form (a verb's declaration in options.ts/verbs.ts is one; other fields are ignored). */
export type OptionSpecs = Readonly<Record<string, { readonly type: "string" | "boolean"; readonly short?: string; readonly multiple?: boolean }>>;

/** Parsed options and positionals. */
export interface Parsed {
  readonly values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  readonly positionals: string[];
}

/**
 * Parses `argv` strictly: unknown options are usage errors.
 *
 * @example
 * ```ts
 * const { values, positionals } = parse(["--addr", "tcp!h!1", "/proc"], { addr: { type: "string" } });
 * ```
 */
export function parse(argv: readonly string[], options: OptionSpecs, limits: { min?: number; max?: number } = {}): Parsed {
  let parsed: Parsed;
  try {
    const specs = Object.fromEntries(Object.entries(options).map(([k, o]) => [k, { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) }]));
    parsed = parseArgs({ args: [...argv], options: specs, allowPositionals: true, strict: true }) as Parsed;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const n = parsed.positionals.length;
  if (limits.min !== undefined && n < limits.min) throw new UsageError(`expected at least ${limits.min} argument(s), got ${n}`);
  if (limits.max !== undefined && n > limits.max) throw new UsageError(`expected at most ${limits.max} argument(s), got ${n}`);
  return parsed;
}

/** A string option's value, or the fallback; refuses an empty string. */
export function str(p: Parsed, name: string, fallback?: string): string | undefined {
  const v = p.values[name];
  if (v === undefined) return fallback;
  if (typeof v !== "string" || v === "") throw new UsageError(`--${name} needs a value`);
  return v;
}

/** Like `str`, but the option is required. */
export function required(p: Parsed, name: string, fallback?: string, hint = ""): string {
  const v = str(p, name, fallback);
  if (v === undefined) throw new UsageError(`--${name} is required${hint ? `: ${hint}` : ""}`);
  return v;
}

/** A host file placed into the image: `--extra SRC:/GUEST/PATH`. */
export interface ExtraSpec {
  readonly src: string;
  readonly dest: string;
}

/** The `--extra SRC:/GUEST/PATH` options of `p`, with SRC made absolute. */
export function extraFiles(p: Parsed): ExtraSpec[] {
  const list = (p.values.extra as string[] | undefined) ?? [];
  return list.map((spec) => {
    const i = spec.lastIndexOf(":");
    if (i <= 0 || !spec.slice(i + 1).startsWith("/")) throw new UsageError(`--extra takes SRC:/GUEST/PATH, got ${JSON.stringify(spec)}`);
    return { src: resolve(spec.slice(0, i)), dest: spec.slice(i + 1) };
  });
}
