/**
 * Text made from the verb declarations: `cohesix VERB --help`, the global
 * usage and the README's command table.
 * @module
 */
import { optionLabel, synopsis, type Verb } from "./verb.ts";

/** A verb with the words that reach it (`["image", "verify"]`). */
export interface Reached {
  readonly verb: Verb;
  readonly path: readonly string[];
}

/**
 * Every verb and sub-verb that is not hidden, in table order, with its path.
 *
 * @example
 * ```ts
 * walk(VERBS).map((r) => r.path.join(" ")); // ["new", "test", …, "image", "image verify", …]
 * ```
 */
export function walk(verbs: readonly Verb[], prefix: readonly string[] = []): Reached[] {
  const out: Reached[] = [];
  for (const verb of verbs) {
    if (verb.hidden) continue;
    const path = [...prefix, verb.name];
    if (verb.run || !verb.subverbs) out.push({ verb, path });
    if (verb.subverbs) out.push(...walk(verb.subverbs, path));
  }
  return out;
}

function wrap(text: string, width: number, indent: string): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(indent + line);
  return lines.join("\n");
}

/**
 * `cohesix VERB --help`: usage, summary, description, arguments, options
 * (with defaults, choices and environment) and examples.
 *
 * @example
 * ```ts
 * verbHelp({ verb: lsVerb, path: ["ls"] }); // "usage: cohesix ls [PATH] [OPTIONS]\n\nlists a directory…"
 * ```
 */
export function verbHelp(r: Reached): string {
  const { verb, path } = r;
  const out = [`usage: cohesix ${synopsis(verb, path)}`, "", verb.summary, "", wrap(verb.description, 76, ""), ""];
  const subs = (verb.subverbs ?? []).filter((s) => !s.hidden);
  if (subs.length > 0) {
    out.push("verbs:");
    for (const s of subs) out.push(`  ${[...path, s.name].join(" ").padEnd(22)} ${s.summary}`);
    out.push("");
  }
  if (verb.args && verb.args.length > 0) {
    out.push("arguments:");
    for (const a of verb.args) out.push(`  ${a.name.padEnd(22)} ${a.help}`);
    out.push("");
  }
  const options = Object.entries(verb.options ?? {});
  if (verb.run) {
    out.push("options:");
    for (const [name, o] of options) {
      const label = `${optionLabel(name, o)}${o.type === "string" ? ` ${o.value ?? "VALUE"}` : ""}${o.multiple ? "..." : ""}`;
      const notes = [
        o.choices ? `one of ${o.choices.join(", ")}` : "",
        o.default !== undefined ? `default ${o.default}` : o.defaultNote ? `default ${o.defaultNote}` : "",
        o.env ? `env ${o.env}` : "",
      ].filter(Boolean);
      out.push(`  ${label.padEnd(22)} ${o.help}${notes.length ? ` (${notes.join("; ")})` : ""}`);
    }
    out.push(`  ${"-h, --help".padEnd(22)} this help`, "");
  }
  if (verb.examples && verb.examples.length > 0) {
    out.push("examples:", ...verb.examples.map((e) => `  ${e}`), "");
  }
  return out.join("\n");
}

/**
 * The global usage: every verb with its summary.
 *
 * @example
 * ```ts
 * globalUsage(VERBS); // "usage: cohesix COMMAND [OPTIONS]\n\ncommands:\n  new …"
 * ```
 */
export function globalUsage(verbs: readonly Verb[]): string {
  const rows = walk(verbs).map((r) => `  ${r.path.join(" ").padEnd(16)} ${r.verb.summary}`);
  return [
    "usage: cohesix COMMAND [OPTIONS]",
    "",
    "commands:",
    ...rows,
    "",
    "cohesix COMMAND --help (or cohesix help COMMAND) shows a command's options and examples;",
    "cohesix --version prints the version; cohesix completion bash|zsh prints a completion script.",
    "",
  ].join("\n");
}

/** `|` and line breaks would end a Markdown table cell. */
function cell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\s*\n\s*/g, " ");
}

/**
 * The README's command table, between the markers the README keeps around
 * it; a test checks the README holds exactly this.
 *
 * @example
 * ```ts
 * markdownTable(VERBS); // "| command | what it does |\n| --- | --- |\n| `cohesix new DIR [OPTIONS]` | …"
 * ```
 */
export function markdownTable(verbs: readonly Verb[]): string {
  const rows = walk(verbs).map((r) => `| \`cohesix ${cell(synopsis(r.verb, r.path))}\` | ${cell(r.verb.description)} |`);
  return ["| command | what it does |", "| --- | --- |", ...rows, ""].join("\n");
}
