/**
 * The A/B boot state as data: the record U-Boot's boot script and the root
 * task both read and write. It is a text file of `name=value` lines, the
 * format U-Boot's `env export -t` writes and `env import -t` reads, padded
 * with NUL bytes to {@link STATE_FILE_BYTES} so that a rewrite never changes
 * the file's size (one sector, the same FAT clusters, the same directory
 * entry).
 *
 * Torn writes: the record starts with `ab_0_seq` and ends with `ab_z_seq`
 * (`env export` sorts by name), both the same sequence number. A write torn
 * between the two leaves them different, and the copy is refused. Two copies
 * are kept, `state.env` then `state.bak`, always written in that order: while
 * one is being written the other is whole, and a whole `state.env` is never
 * older than `state.bak`. So the reader takes `state.env` when it is whole,
 * else `state.bak` ({@link chooseBootState}).
 *
 * Values stay tiny on purpose: U-Boot's `setexpr` computes in hex and
 * `test -gt` compares decimals, so the tries counter is one digit, where
 * both agree; the sequence number is hex (only `setexpr` touches it).
 * @module
 */
import { InvalidError } from "../nine-door/index.ts";

/** A boot slot: its folder on the boot partition (`/a/Image`, `/b/initrd.gz`). */
export type Slot = "a" | "b";
/** All slots, in order. */
export const SLOTS: readonly Slot[] = ["a", "b"];

/**
 * What is known of a slot. `good`: confirmed, bootable. `trying`: written by
 * an update and not yet confirmed (booted only while tries are left).
 * `rolled_back`: its tries ran out; never tried again by itself. `bad`: the
 * root task found it broken. `empty`: nothing written there.
 */
export type SlotStatus = "good" | "trying" | "rolled_back" | "bad" | "empty";
export const SLOT_STATUSES: readonly SlotStatus[] = ["good", "trying", "rolled_back", "bad", "empty"];

/** The boot state record. */
export interface BootState {
  /** Sequence number of this record, one more on every write. */
  readonly seq: number;
  /** The confirmed slot U-Boot boots when there is nothing to try. */
  readonly active: Slot;
  /** The slot to try next, or none. */
  readonly try: Slot | null;
  /** Try boots left for `try`, 0–9; each try boot takes one before the kernel starts. */
  readonly tries: number;
  readonly slots: Readonly<Record<Slot, SlotStatus>>;
}

/** The state file names on the boot partition, in write order. */
export const STATE_FILES = ["state.env", "state.bak"] as const;
/** Size of each state file in bytes (text, then NUL padding). The boot script loads at most this much. */
export const STATE_FILE_BYTES = 512;
/** The variable names, in the order `env export` writes them (sorted). */
export const STATE_VARS = ["ab_0_seq", "ab_a", "ab_active", "ab_b", "ab_tries", "ab_try", "ab_z_seq"] as const;
/** Most tries a slot can be given: one decimal digit. */
export const MAX_TRIES = 9;
/** The largest sequence number written (it wraps to 1 after it). */
const MAX_SEQ = 0xfffffffffffff;

/**
 * The state of a new image: `active` good, the other slot `empty` or (when
 * it holds the same build) `good`, nothing to try.
 *
 * @example
 * ```ts
 * initialBootState({ active: "a", other: "good" }); // { seq: 1, active: "a", try: null, tries: 0, slots: { a: "good", b: "good" } }
 * ```
 */
export function initialBootState(options: { active?: Slot; other?: SlotStatus } = {}): BootState {
  const active = options.active ?? "a";
  const other = otherSlot(active);
  return { seq: 1, active, try: null, tries: 0, slots: { [active]: "good", [other]: options.other ?? "empty" } as Record<Slot, SlotStatus> };
}

/**
 * The slot that is not `slot`.
 *
 * @example
 * ```ts
 * otherSlot("a"); // "b"
 * ```
 */
export function otherSlot(slot: Slot): Slot {
  return slot === "a" ? "b" : "a";
}

function check(state: BootState): void {
  if (!SLOTS.includes(state.active)) throw new InvalidError(`boot state: active slot ${String(state.active)} must be a or b`);
  if (state.try !== null && !SLOTS.includes(state.try)) throw new InvalidError(`boot state: try slot ${String(state.try)} must be a, b or none`);
  if (!Number.isInteger(state.tries) || state.tries < 0 || state.tries > MAX_TRIES) throw new InvalidError(`boot state: tries ${state.tries} must be a whole number from 0 to ${MAX_TRIES} (one digit: U-Boot's setexpr is hex, test -gt decimal)`);
  if (!Number.isInteger(state.seq) || state.seq < 0 || state.seq > MAX_SEQ) throw new InvalidError(`boot state: sequence ${state.seq} must be a whole number from 0 to ${MAX_SEQ}`);
  for (const s of SLOTS) if (!SLOT_STATUSES.includes(state.slots[s])) throw new InvalidError(`boot state: slot ${s} status ${String(state.slots[s])} must be one of ${SLOT_STATUSES.join(", ")}`);
}

/**
 * The one serialiser: the record as `env export -t` writes it, padded with
 * NULs to {@link STATE_FILE_BYTES}.
 *
 * @example
 * ```ts
 * const bytes = formatBootState(initialBootState());
 * bytes.length; // 512
 * ```
 */
export function formatBootState(state: BootState): Uint8Array {
  check(state);
  const seq = state.seq.toString(16);
  const values: Record<(typeof STATE_VARS)[number], string> = {
    ab_0_seq: seq,
    ab_a: state.slots.a,
    ab_active: state.active,
    ab_b: state.slots.b,
    ab_tries: String(state.tries),
    ab_try: state.try ?? "none",
    ab_z_seq: seq,
  };
  const text = STATE_VARS.map((name) => `${name}=${values[name]}\n`).join("");
  const out = new Uint8Array(STATE_FILE_BYTES);
  out.set(Buffer.from(text, "latin1"));
  return out;
}

/** Why a copy of the state was refused (a torn, empty or foreign file). */
export type BootStateRefusal = { readonly ok: false; readonly reason: string };
/** A parsed copy, or why it was refused. */
export type ParsedBootState = { readonly ok: true; readonly state: BootState } | BootStateRefusal;

/**
 * The one parser. Reads what `env import -t` would: `name=value` lines up to
 * the first NUL; blank lines and `#` comments are skipped; other variables
 * are ignored. Never throws: a torn, empty, oversized or malformed copy is
 * refused with a reason.
 *
 * @example
 * ```ts
 * const parsed = parseBootState(formatBootState(initialBootState()));
 * parsed.ok && parsed.state.active; // "a"
 * parseBootState(new Uint8Array(0)); // { ok: false, reason: "empty" }
 * ```
 */
export function parseBootState(bytes: Uint8Array): ParsedBootState {
  const refuse = (reason: string): BootStateRefusal => ({ ok: false, reason });
  if (bytes.length > STATE_FILE_BYTES) return refuse(`${bytes.length} bytes, more than the ${STATE_FILE_BYTES} the boot script reads`);
  const nul = bytes.indexOf(0);
  const text = Buffer.from(nul < 0 ? bytes : bytes.subarray(0, nul)).toString("latin1");
  if (text.trim() === "") return refuse("empty");
  const vars = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.replace(/^[ \t]+/, "");
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) {
      vars.delete(eq < 0 ? line : line.slice(0, eq));
      continue;
    }
    vars.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const head = vars.get("ab_0_seq");
  const tail = vars.get("ab_z_seq");
  if (head === undefined || tail === undefined) return refuse("torn: the sequence number at its start or end is missing");
  if (head !== tail) return refuse(`torn: sequence ${head} at its start, ${tail} at its end`);
  if (!/^[0-9a-f]{1,13}$/.test(head)) return refuse(`sequence ${JSON.stringify(head)} is not a hex number`);
  const active = vars.get("ab_active");
  if (active !== "a" && active !== "b") return refuse(`active slot ${JSON.stringify(active ?? "")} is not a or b`);
  const tryVar = vars.get("ab_try") ?? "none";
  if (tryVar !== "a" && tryVar !== "b" && tryVar !== "none") return refuse(`try slot ${JSON.stringify(tryVar)} is not a, b or none`);
  const tries = vars.get("ab_tries") ?? "0";
  if (!/^[0-9]$/.test(tries)) return refuse(`tries ${JSON.stringify(tries)} is not one digit`);
  const slots = {} as Record<Slot, SlotStatus>;
  for (const s of SLOTS) {
    const v = vars.get(`ab_${s}`) ?? "empty";
    if (!(SLOT_STATUSES as readonly string[]).includes(v)) return refuse(`slot ${s} status ${JSON.stringify(v)} is not one of ${SLOT_STATUSES.join(", ")}`);
    slots[s] = v as SlotStatus;
  }
  return { ok: true, state: { seq: parseInt(head, 16), active, try: tryVar === "none" ? null : tryVar, tries: Number(tries), slots } };
}

/**
 * The state the boot script uses: `state.env` when whole, else `state.bak`,
 * else none (then the script boots slot `a`, or `b` if `a` does not load,
 * and writes nothing). `undefined` stands for a missing file.
 *
 * @example
 * ```ts
 * const chosen = chooseBootState(tornBytes, formatBootState(initialBootState()));
 * chosen.from; // "state.bak"
 * ```
 */
export function chooseBootState(primary: Uint8Array | undefined, backup: Uint8Array | undefined): { state: BootState | null; from: (typeof STATE_FILES)[number] | null; refused: string[] } {
  const refused: string[] = [];
  for (const [i, bytes] of [primary, backup].entries()) {
    const name = STATE_FILES[i]!;
    if (bytes === undefined) {
      refused.push(`${name}: missing`);
      continue;
    }
    const parsed = parseBootState(bytes);
    if (parsed.ok) return { state: parsed.state, from: name, refused };
    refused.push(`${name}: ${parsed.reason}`);
  }
  return { state: null, from: null, refused };
}

/** What one boot does, as the boot script decides it ({@link bootStep}). */
export interface BootDecision {
  /** The slot whose kernel is started. */
  readonly slot: Slot;
  /** `try`: a counted try boot; `normal`: the active slot; `rollback`: the try slot's tries ran out; `fallback`: no readable state. */
  readonly kind: "try" | "normal" | "rollback" | "fallback";
  /** The state written before the kernel starts, or null when nothing is written. */
  readonly write: BootState | null;
}

/**
 * The boot script's decision as a function (the script in
 * `boot-script.ts` does the same steps in U-Boot's shell). A try boot
 * takes one try and writes it before the kernel starts; a try slot with no
 * tries left is marked `rolled_back` and the active slot boots; a normal
 * boot writes nothing.
 *
 * @example
 * ```ts
 * bootStep({ ...initialBootState({ other: "trying" }), try: "b", tries: 3 });
 * // { slot: "b", kind: "try", write: { …, tries: 2, seq: 2 } }
 * ```
 */
export function bootStep(state: BootState | null): BootDecision {
  if (state === null) return { slot: "a", kind: "fallback", write: null };
  const next = (s: BootState): BootState => ({ ...s, seq: s.seq >= MAX_SEQ ? 1 : s.seq + 1 });
  const t = state.try;
  if (t !== null && t !== state.active && state.slots[t] === "trying") {
    if (state.tries > 0) return { slot: t, kind: "try", write: next({ ...state, tries: state.tries - 1 }) };
    return { slot: state.active, kind: "rollback", write: next({ ...state, try: null, slots: { ...state.slots, [t]: "rolled_back" } }) };
  }
  return { slot: state.active, kind: "normal", write: null };
}
