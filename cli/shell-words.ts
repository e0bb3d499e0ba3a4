/**
 * The queen shell's words: splitting a script into commands (`;` and new
 * lines), a command into words (single and double quotes, backslash), and
 * paths relative to the shell's working directory. No I/O here.
 * @module
 */

/** A word and where it ends in its command's text. */
export interface Word {
  readonly text: string;
  /** Index in the command text just after the word. */
  readonly end: number;
}

/** A command line, split. */
export interface CommandLine {
  /** The command's text as typed. */
  readonly text: string;
  readonly words: readonly Word[];
}

/** A quote that was never closed. */
export class UnclosedQuoteError extends Error {
  constructor(quote: string) {
    super(`invalid: unclosed ${quote === "'" ? "single" : "double"} quote`);
    this.name = "UnclosedQuoteError";
  }
}

/**
 * Splits a script into commands at `;` and new lines outside quotes;
 * drops empty commands and `#` comments.
 *
 * @example
 * ```ts
 * splitCommands("ls /proc; cat '/proc/boot' # the banner"); // ["ls /proc", "cat '/proc/boot'"]
 * ```
 */
export function splitCommands(script: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quote: string | undefined;
  let comment = false;
  for (let i = 0; i < script.length; i++) {
    const c = script[i]!;
    if (comment) {
      if (c === "\n") {
        comment = false;
        out.push(cur);
        cur = "";
      }
      continue;
    }
    if (quote) {
      cur += c;
      if (c === "\\" && quote === '"' && i + 1 < script.length) cur += script[++i];
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === "'" || c === '"') quote = c;
    if (c === "\\" && i + 1 < script.length) {
      cur += c + script[++i];
      continue;
    }
    if (c === "#" && (cur === "" || /\s$/.test(cur))) {
      comment = true;
      continue;
    }
    if (c === ";" || c === "\n") {
      out.push(cur);
      cur = "";
      continue;
    }
    cur += c;
  }
  if (quote) throw new UnclosedQuoteError(quote);
  out.push(cur);
  return out.map((s) => s.trim()).filter((s) => s !== "");
}

/**
 * Splits one command into words, as a POSIX shell would for quotes:
 * `'…'` literal, `"…"` with `\"` and `\\`, a bare `\` escapes the next
 * character.
 *
 * @example
 * ```ts
 * words(`write /queen/lifecycle/ctl "drain"`).map((w) => w.text); // ["write", "/queen/lifecycle/ctl", "drain"]
 * ```
 */
export function words(text: string): Word[] {
  const out: Word[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (i >= text.length) break;
    let word = "";
    while (i < text.length && !/\s/.test(text[i]!)) {
      const c = text[i]!;
      if (c === "'" || c === '"') {
        const close = c;
        i++;
        for (;;) {
          if (i >= text.length) throw new UnclosedQuoteError(close);
          const d = text[i]!;
          if (d === close) break;
          if (close === '"' && d === "\\" && (text[i + 1] === '"' || text[i + 1] === "\\")) {
            word += text[i + 1];
            i += 2;
            continue;
          }
          word += d;
          i++;
        }
        i++;
        continue;
      }
      if (c === "\\" && i + 1 < text.length) {
        word += text[i + 1];
        i += 2;
        continue;
      }
      word += c;
      i++;
    }
    out.push({ text: word, end: i });
  }
  return out;
}

/**
 * The command's raw text after its first `n` words, trimmed; a wholly
 * single-quoted rest loses its quotes. `ctl` and `write` take their JSON or
 * text this way, so `ctl {"spawn":"heartbeat"}` keeps its double quotes.
 *
 * @example
 * ```ts
 * rawAfter(parseLine('ctl {"kill":"worker-2"}'), 1); // '{"kill":"worker-2"}'
 * ```
 */
export function rawAfter(line: CommandLine, n: number): string {
  const from = n === 0 ? 0 : (line.words[n - 1]?.end ?? line.text.length);
  const rest = line.text.slice(from).trim();
  return rest.length >= 2 && rest.startsWith("'") && rest.endsWith("'") && !rest.slice(1, -1).includes("'") ? rest.slice(1, -1) : rest;
}

/**
 * One command's text and words.
 *
 * @example
 * ```ts
 * parseLine("ls -l /proc").words.length; // 3
 * ```
 */
export function parseLine(text: string): CommandLine {
  return { text, words: words(text) };
}

/**
 * `path` made absolute against the working directory `cwd`, with `.` and
 * `..` resolved (never above `/`) and no trailing slash.
 *
 * @example
 * ```ts
 * resolvePath("/worker", "../proc/boot"); // "/proc/boot"
 * resolvePath("/worker", "worker-3");     // "/worker/worker-3"
 * ```
 */
export function resolvePath(cwd: string, path: string): string {
  const parts = (path.startsWith("/") ? path : `${cwd}/${path}`).split("/");
  const out: string[] = [];
  for (const p of parts) {
    if (p === "" || p === ".") continue;
    if (p === "..") out.pop();
    else out.push(p);
  }
  return `/${out.join("/")}`;
}

/**
 * How to complete a partial path: the directory to list (absolute), the
 * text to keep before each candidate name, and the name prefix to match.
 *
 * @example
 * ```ts
 * completionTarget("/", "/wo");         // { dir: "/", keep: "/", prefix: "wo" }
 * completionTarget("/proc", "life");    // { dir: "/proc", keep: "", prefix: "life" }
 * ```
 */
export function completionTarget(cwd: string, partial: string): { dir: string; keep: string; prefix: string } {
  const slash = partial.lastIndexOf("/");
  const keep = slash < 0 ? "" : partial.slice(0, slash + 1);
  return { dir: resolvePath(cwd, keep === "" ? "." : keep), keep, prefix: partial.slice(slash + 1) };
}
