/**
 * `--json` for the appliance's text files: `key=value` lines (/proc/boot,
 * /proc/mem, /proc/workers, /proc/sessions …) read as JSON.
 *
 * A line is a record: `k=v` tokens separated by spaces; a word after a
 * pair continues its value (`kernel=Linux 6.1 x64`); a word before the
 * first pair labels the line (`limits max_conns=1024 …`); a line with no
 * `=` is a label and its text (`cohesix 0.1.0`); more words before the
 * first pair make it prose, not a record (a log line). Values that read as
 * numbers or booleans become them, `-` becomes null. The file becomes:
 * one object when each line holds one pair (or is a label and its text),
 * as /proc/boot; one object for a single line of pairs, as /proc/mem;
 * otherwise (and always for rows that start with `id=`, as /proc/workers)
 * an array of the records, or, when some lines are labelled,
 * an object with each labelled line under its label and the others under
 * `records` (/proc/sessions).
 * @module
 */
import { InvalidError } from "../nine-door/index.ts";

/** A value as JSON gives it. */
export type RecordValue = string | number | boolean | null;
/** One line's pairs. */
export type KeyValues = Record<string, RecordValue>;

function valueOf(text: string): RecordValue {
  if (text === "-") return null;
  if (text === "true" || text === "false") return text === "true";
  if (/^-?(0|[1-9]\d*)(\.\d+)?$/.test(text) && Number.isFinite(Number(text)) && (text.includes(".") || Number.isSafeInteger(Number(text)))) return Number(text);
  return text;
}

interface Line {
  readonly label?: string;
  readonly text?: string;
  readonly pairs: [string, string][];
}

function parseLine(line: string): Line | undefined {
  const words = line.trim().split(/\s+/);
  const pairs: [string, string][] = [];
  let label: string | undefined;
  const loose: string[] = [];
  for (const w of words) {
    const eq = w.indexOf("=");
    if (eq > 0 && /^[A-Za-z_][\w.-]*$/.test(w.slice(0, eq))) pairs.push([w.slice(0, eq), w.slice(eq + 1)]);
    else if (pairs.length > 0) pairs[pairs.length - 1]![1] += ` ${w}`;
    else if (label === undefined) label = w;
    else loose.push(w);
  }
  if (label === undefined && pairs.length === 0) return undefined;
  // Words between a label and the first pair: prose (a log line), not a record.
  if (pairs.length > 0 && loose.length > 0) return undefined;
  return { ...(label !== undefined ? { label } : {}), ...(loose.length ? { text: loose.join(" ") } : {}), pairs };
}

const record = (l: Line): KeyValues => Object.fromEntries(l.pairs.map(([k, v]) => [k, valueOf(v)]));

/**
 * The JSON form of a `key=value` file; throws `invalid:` when it isn't one.
 *
 * @example
 * ```ts
 * keyValueJson("cohesix 0.1.0\nboard=host\n"); // { cohesix: "0.1.0", board: "host" }
 * keyValueJson("id=worker-1 ticks=3\nid=worker-2 ticks=9\n"); // [{ id: "worker-1", ticks: 3 }, { id: "worker-2", ticks: 9 }]
 * ```
 */
export function keyValueJson(text: string): KeyValues | KeyValues[] | Record<string, KeyValues | KeyValues[] | RecordValue> {
  const lines: Line[] = [];
  for (const raw of text.split("\n")) {
    if (raw.trim() === "") continue;
    const l = parseLine(raw);
    if (l === undefined || (l.pairs.length === 0 && l.text === undefined)) throw new InvalidError(`not key=value lines: ${JSON.stringify(raw.slice(0, 60))}`);
    lines.push(l);
  }
  if (!lines.some((l) => l.pairs.length > 0)) throw new InvalidError("not key=value lines: no key=value in the file");
  if (lines.every((l) => (l.pairs.length === 1 && l.label === undefined) || (l.pairs.length === 0 && l.label !== undefined))) {
    const out: KeyValues = {};
    for (const l of lines) {
      if (l.label !== undefined) out[l.label] = valueOf(l.text ?? "");
      else out[l.pairs[0]![0]] = valueOf(l.pairs[0]![1]);
    }
    return out;
  }
  // Rows of a table (/proc/workers, /proc/sessions) start with id=: an array even when there is one.
  const row = (l: Line): boolean => l.label === undefined && l.pairs[0]?.[0] === "id";
  if (lines.length === 1 && lines[0]!.label === undefined && !row(lines[0]!)) return record(lines[0]!);
  if (!lines.some((l) => l.label !== undefined)) return lines.map(record);
  const out: Record<string, KeyValues | KeyValues[] | RecordValue> = {};
  const records: KeyValues[] = [];
  for (const l of lines) {
    if (l.label === undefined) records.push(record(l));
    else out[l.label] = l.pairs.length > 0 ? record(l) : valueOf(l.text ?? "");
  }
  out.records = records;
  return out;
}

/**
 * A file's text as JSON for `cat --json`: JSON files as they are (/proc/state),
 * `key=value` files by {@link keyValueJson}.
 *
 * @example
 * ```ts
 * fileJson("rss=1 heap_used=2\n"); // { rss: 1, heap_used: 2 }
 * ```
 */
export function fileJson(text: string): unknown {
  const trimmed = text.trim();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      return JSON.parse(trimmed);
    } catch {
      // JSON lines (telemetry): one value per line.
      try {
        return trimmed.split("\n").map((l) => JSON.parse(l) as unknown);
      } catch {
        // not JSON: try key=value
      }
    }
  }
  return keyValueJson(text);
}
