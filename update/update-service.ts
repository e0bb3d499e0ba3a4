/**
 * The appliance's `/update/` service (docs/updates.md, "The /update/
 * service"): a queen streams a signed bundle into `data`, and `ctl`
 * commands begin, commit, roll back, reboot or abort. Everything that
 * reaches it is checked again here, although the queen is authenticated:
 * the header and every chunk while the bytes arrive (see `staging.ts`),
 * the whole staged file and every payload before `commit` writes the
 * inactive slot, and the boot state last (see `slot-writer.ts`).
 *
 * The service never writes the running slot, and refuses to start or
 * commit an update while a slot is being tried. Commands and data writes
 * run one at a time, in arrival order; `status` reads at any time.
 * @module
 */
import { open, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BusyError, InvalidError, NotFoundError, toNineError, type Caller } from "../nine-door/index.ts";
import { nextBootState, readBootStateFiles, writeBootStateFiles } from "./boot-partition.ts";
import { SLOT_FILES } from "./boot-script.ts";
import { MAX_TRIES, otherSlot, SLOTS, type BootState, type Slot } from "./boot-state.ts";
import { bundleHeaderLength, checkBundleHeader, parseBundleHeader, payloadRanges } from "./bundle.ts";
import { checkBundleManifest } from "./bundle-file.ts";
import { checkStagedBundle } from "./payloads.ts";
import { writeSlot } from "./slot-writer.ts";
import { DEFAULT_STAGING_LIMITS, Staging, stagingDir, type StagingLimits } from "./staging.ts";

/** The service's bounds: the staging's, and the tries a commit may give. */
export interface UpdateLimits extends StagingLimits {
  /** Tries a `commit` gives when it names none (1–9). Default 3. */
  readonly defaultTries: number;
}

/** Default {@link UpdateLimits}. */
export const DEFAULT_UPDATE_LIMITS: UpdateLimits = { ...DEFAULT_STAGING_LIMITS, defaultTries: 3 };

/** What the service is given by whoever runs it (the guest's init, or `serve --boot-dir` on the host board). */
export interface UpdateServiceOptions {
  /** Where the boot partition is mounted (`/boot` in the guest). */
  readonly bootDir: string;
  /** The appliance's state directory; the transfer is staged in `<stateDir>/update/`. */
  readonly stateDir: string;
  /** The slot this appliance booted from. */
  readonly runningSlot: Slot;
  /** This appliance's board: a bundle for another board is refused. */
  readonly board: string;
  /** The release public key baked into the running image: bundles must be signed with it. */
  readonly releasePub: Uint8Array;
  /** The running build's version (an older bundle needs `allowDowngrade`). */
  readonly runningVersion: string;
  readonly limits?: Partial<UpdateLimits>;
  /**
   * Makes the boot partition writable (`rw`) for the moment of a write and
   * read-only again after (`ro`, after a sync). The guest passes busybox
   * `mount -o remount,rw /boot`; absent on the host board.
   */
  readonly remount?: (mode: "rw" | "ro") => Promise<void>;
  /** Reboots the appliance (the guest: sync, then reboot). Absent: `reboot` is refused. */
  readonly reboot?: () => void | Promise<void>;
  /** Appends a line to `/log/queen.log`. */
  readonly audit?: (line: string) => void;
  /**
   * Why `slot` was rolled back, when something other than this service
   * knows (the root task's record of an unconfirmed try); one word or
   * `snake_case`. Without it, or when it answers undefined, a rollback this
   * service did not make reads `tries_ran_out`.
   */
  readonly rollbackReason?: (slot: Slot) => string | undefined | Promise<string | undefined>;
}

/** A parsed `/update/ctl` command. */
export type UpdateCommand =
  | { readonly kind: "begin"; readonly size: number; readonly sha256: string; readonly allowDowngrade: boolean }
  | { readonly kind: "commit"; readonly tries: number | undefined; readonly allowDowngrade: boolean }
  | { readonly kind: "rollback" }
  | { readonly kind: "reboot" }
  | { readonly kind: "abort" };

/**
 * Parses one `/update/ctl` command; unknown commands and fields answer `invalid:`.
 *
 * @example
 * ```ts
 * parseUpdateCommand('{"commit":{"tries":3}}'); // { kind: "commit", tries: 3, allowDowngrade: false }
 * ```
 */
export function parseUpdateCommand(text: string): UpdateCommand {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new InvalidError(`not JSON: ${(err as Error).message}`);
  }
  const usage = 'expected {"begin":{"size":N,"sha256":"…"}}, {"commit":{"tries":N}}, {"rollback":true}, {"reboot":true} or {"abort":true}';
  if (typeof v !== "object" || v === null || Array.isArray(v) || Object.keys(v).length !== 1) throw new InvalidError(`update command: ${usage}`);
  const [key, body] = Object.entries(v)[0]!;
  const fields = (allowed: readonly string[]): Record<string, unknown> => {
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw new InvalidError(`${key} takes an object: ${usage}`);
    for (const k of Object.keys(body)) if (!allowed.includes(k)) throw new InvalidError(`unknown field ${JSON.stringify(k)} in ${key} (known: ${allowed.join(", ")})`);
    return body as Record<string, unknown>;
  };
  const flag = (o: Record<string, unknown>, name: string): boolean => {
    if (o[name] === undefined) return false;
    if (typeof o[name] !== "boolean") throw new InvalidError(`${key}.${name} must be true or false`);
    return o[name] as boolean;
  };
  switch (key) {
    case "begin": {
      const o = fields(["size", "sha256", "allowDowngrade"]);
      if (typeof o.size !== "number" || !Number.isSafeInteger(o.size) || o.size <= 0) throw new InvalidError("begin.size must be the bundle's size in bytes");
      if (typeof o.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(o.sha256)) throw new InvalidError("begin.sha256 must be the bundle file's sha256, 64 lowercase hex digits");
      return { kind: "begin", size: o.size, sha256: o.sha256, allowDowngrade: flag(o, "allowDowngrade") };
    }
    case "commit": {
      const o = fields(["tries", "allowDowngrade"]);
      if (o.tries !== undefined && (typeof o.tries !== "number" || !Number.isInteger(o.tries) || o.tries < 1 || o.tries > MAX_TRIES)) {
        throw new InvalidError(`commit.tries must be a whole number from 1 to ${MAX_TRIES} (one digit: U-Boot counts it)`);
      }
      return { kind: "commit", tries: o.tries as number | undefined, allowDowngrade: flag(o, "allowDowngrade") };
    }
    case "rollback":
    case "reboot":
    case "abort":
      if (body !== true) throw new InvalidError(`${key} takes true: {"${key}":true}`);
      return { kind: key };
    default:
      throw new InvalidError(`unknown update command ${JSON.stringify(key)}: ${usage}`);
  }
}

/**
 * The `/update/` service behind `ctl`, `data` and `status`.
 *
 * @example
 * ```ts
 * const updates = await UpdateService.open({ bootDir: "/boot", stateDir, runningSlot: "a", board: "aarch64-virt", releasePub, runningVersion: "1.2.0" });
 * await updates.command('{"begin":{"size":1048600,"sha256":"…"}}', queen); // "ok offset=0"
 * ```
 */
export class UpdateService {
  readonly #o: UpdateServiceOptions;
  readonly #limits: UpdateLimits;
  readonly #staging: Staging;
  #queue: Promise<unknown> = Promise.resolve();
  /** Who has `/update/data` open for writing, if anyone. */
  #writer: string | undefined;

  private constructor(options: UpdateServiceOptions, limits: UpdateLimits, staging: Staging) {
    this.#o = options;
    this.#limits = limits;
    this.#staging = staging;
  }

  /** Opens the service and recovers a transfer a previous run staged. */
  static async open(options: UpdateServiceOptions): Promise<UpdateService> {
    const limits = { ...DEFAULT_UPDATE_LIMITS, ...options.limits };
    if (!Number.isInteger(limits.defaultTries) || limits.defaultTries < 1 || limits.defaultTries > MAX_TRIES) {
      throw new InvalidError(`update.default_tries must be 1..${MAX_TRIES}, got ${limits.defaultTries}`);
    }
    const staging = await Staging.open({
      stateDir: options.stateDir,
      limits,
      check: (header, transfer) =>
        checkBundleHeader(header, { releasePub: options.releasePub, board: options.board, runningVersion: options.runningVersion, allowDowngrade: transfer.allowDowngrade }),
    });
    const service = new UpdateService(options, limits, staging);
    if (staging.transfer) options.audit?.(`update: staged transfer of ${staging.transfer.sha256.slice(0, 16)}… resumes at ${staging.verified} of ${staging.transfer.size} bytes`);
    return service;
  }

  /** The limits in force. */
  get limits(): UpdateLimits {
    return this.#limits;
  }

  /**
   * Runs one `/update/ctl` command (already unwrapped from a signed
   * envelope) and returns its reply line; a refusal throws and is audited.
   */
  command(text: string, caller: Caller): Promise<string> {
    return this.#ordered(async () => {
      try {
        return await this.#run(parseUpdateCommand(text), caller);
      } catch (err) {
        const e = toNineError(err);
        this.#audit(`update from ${caller.subject} refused: ${e.message}: ${text.slice(0, 200)}`);
        throw e;
      }
    });
  }

  /**
   * Takes `/update/data` for `who` (one writer at a time: `busy:` for a
   * second); returns the release to call on close.
   */
  openData(who: string): () => void {
    if (this.#writer !== undefined) throw new BusyError(`/update/data is open by ${this.#writer}: one transfer at a time`);
    this.#writer = who;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#writer = undefined;
    };
  }

  /** A write to `/update/data` at `offset`; resolves with the bytes taken. */
  write(offset: number, data: Uint8Array, caller: Caller): Promise<number> {
    return this.#ordered(async () => {
      const before = this.#staging.transfer;
      try {
        return await this.#staging.write(offset, data);
      } catch (err) {
        const e = toNineError(err);
        // Offsets a client got wrong are its own business; a refused header or chunk is audited.
        if (before !== undefined && !/^invalid: expected offset/.test(e.message)) this.#audit(`update data from ${caller.subject} refused: ${e.message}`);
        throw e;
      }
    });
  }

  /** The `/update/status` text: `key=value` lines (see the contract in docs/updates.md). */
  async status(): Promise<string> {
    const { state } = await readBootStateFiles(this.#o.bootDir);
    const running = this.#o.runningSlot;
    const lines = [`slot=${running}`];
    if (state) {
      lines.push(`state=${state.slots[running]}`, `tries_left=${state.try === running ? state.tries : 0}`);
    } else {
      lines.push("state=unknown", "tries_left=0");
    }
    lines.push(`version=${this.#o.runningVersion}`);
    for (const s of SLOTS) lines.push(`${s}_state=${state ? state.slots[s] : "unknown"}`, `${s}_version=${await slotVersion(this.#o.bootDir, s)}`);
    const t = this.#staging.transfer;
    lines.push(`transfer=${this.#staging.state}`, `received=${this.#staging.verified}`, `size=${t?.size ?? 0}`);
    const rolled = state ? SLOTS.find((s) => state.slots[s] === "rolled_back") : undefined;
    if (rolled) lines.push(`rolled_back=${rolled} reason=${await this.#rollbackReason(rolled)}`);
    return `${lines.join("\n")}\n`;
  }

  /** Closes the staging file (what is staged stays for the next run). */
  async close(): Promise<void> {
    await this.#ordered(() => this.#staging.close());
  }

  #ordered<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #audit(line: string): void {
    this.#o.audit?.(line);
  }

  async #run(cmd: UpdateCommand, caller: Caller): Promise<string> {
    switch (cmd.kind) {
      case "begin": {
        await this.#refuseWhileTrying();
        const staged = this.#staging.transfer;
        if (staged !== undefined && staged.sha256 !== cmd.sha256 && this.#writer !== undefined) {
          throw new BusyError(`a transfer of another bundle is under way (/update/data is open by ${this.#writer}): finish it, or {"abort":true} once its writer has closed`);
        }
        const offset = await this.#staging.begin({ size: cmd.size, sha256: cmd.sha256, allowDowngrade: cmd.allowDowngrade });
        this.#audit(`update begin from ${caller.subject}: ${cmd.size} bytes sha256=${cmd.sha256} offset=${offset}`);
        return `ok offset=${offset}`;
      }
      case "commit":
        return this.#commit(cmd, caller);
      case "rollback":
        return this.#rollback(caller);
      case "reboot": {
        const reboot = this.#o.reboot;
        if (!reboot) throw new InvalidError("the host board does not reboot");
        this.#audit(`update reboot from ${caller.subject}`);
        // The reply goes out first; the reboot follows.
        setTimeout(() => void Promise.resolve(reboot()).catch((err: unknown) => this.#audit(`reboot failed: ${(err as Error).message}`)), 200);
        return "ok rebooting";
      }
      case "abort":
        await this.#staging.drop();
        this.#audit(`update abort from ${caller.subject}: staged transfer dropped`);
        return "ok aborted";
    }
  }

  async #readState(): Promise<BootState> {
    const { state, refused } = await readBootStateFiles(this.#o.bootDir);
    if (!state) throw new NotFoundError(`boot state in ${this.#o.bootDir}: no whole copy (${refused.join("; ")})`);
    return state;
  }

  /** `busy:` while a slot is being tried: one update at a time, and never over a try. */
  async #refuseWhileTrying(state?: BootState): Promise<BootState> {
    const s = state ?? (await this.#readState());
    if (s.try !== null && s.slots[s.try] === "trying") {
      throw new BusyError(`slot ${s.try} is trying (${s.tries} tries left); wait until it is confirmed or rolled back, or run cohesix update --rollback`);
    }
    return s;
  }

  async #commit(cmd: Extract<UpdateCommand, { kind: "commit" }>, caller: Caller): Promise<string> {
    const staging = this.#staging;
    const t = staging.transfer;
    if (t === undefined) throw new InvalidError('nothing staged: {"begin":…} and write the bundle to /update/data first');
    if (staging.state !== "staged" || staging.header === undefined) throw new InvalidError(`the transfer is not complete: ${staging.verified} of ${t.size} bytes received and verified`);
    const state = await this.#refuseWhileTrying();
    const running = this.#o.runningSlot;
    const slot = otherSlot(running);
    if (slot === state.active) {
      throw new InvalidError(`slot ${slot} is the confirmed slot and this appliance runs slot ${running} (not confirmed): confirm slot ${running} or roll back before updating`);
    }
    // Everything again, from the staged file: the header (signature, board,
    // version with this command's allowDowngrade), then every byte.
    const first = await readRange(staging.path, 0, 20);
    const { header, headerEnd } = parseBundleHeader(await readRange(staging.path, 0, bundleHeaderLength(first)));
    checkBundleHeader(header, { releasePub: this.#o.releasePub, board: this.#o.board, runningVersion: this.#o.runningVersion, allowDowngrade: cmd.allowDowngrade });
    await checkStagedBundle(staging.path, { header, headerEnd, sha256: t.sha256 });
    const manifest = payloadRanges(header).find((r) => r.name === SLOT_FILES.manifest)!;
    checkBundleManifest(header, await readRange(staging.path, manifest.start, manifest.end - manifest.start), { releasePub: this.#o.releasePub });
    const tries = cmd.tries ?? this.#limits.defaultTries;
    await this.#o.remount?.("rw");
    try {
      await writeSlot({ bootDir: this.#o.bootDir, slot, state, tries, bundle: staging.path, header, headerEnd });
    } catch (err) {
      this.#audit(`update commit to slot ${slot} failed while writing: ${(err as Error).message}; slot ${slot} is left empty, slot ${running} untouched`);
      throw err;
    } finally {
      await this.#o.remount?.("ro");
    }
    await staging.drop();
    await rm(join(stagingDir(this.#o.stateDir), "rollback.json"), { force: true });
    this.#audit(`update commit from ${caller.subject}: slot ${slot} version ${header.version} written, trying with ${tries} tries`);
    return `ok slot=${slot} version=${header.version} tries=${tries}`;
  }

  /**
   * `rollback`: a pending try is cancelled (the tried slot `rolled_back`,
   * the confirmed slot boots next); otherwise the other slot, which must be
   * `good`, becomes the confirmed one.
   */
  async #rollback(caller: Caller): Promise<string> {
    const state = await this.#readState();
    let next: BootState;
    let rolled: Slot | undefined;
    if (state.try !== null && state.slots[state.try] === "trying") {
      rolled = state.try;
      next = nextBootState(state, { try: null, tries: 0, slots: { ...state.slots, [rolled]: "rolled_back" } });
    } else {
      const other = otherSlot(this.#o.runningSlot);
      if (state.slots[other] !== "good") throw new InvalidError(`slot ${other} is ${state.slots[other]}, not good: there is nothing to roll back to`);
      if (state.active === other) throw new InvalidError(`slot ${other} is already the confirmed slot: the next boot runs it`);
      next = nextBootState(state, { active: other, try: null, tries: 0 });
    }
    await this.#o.remount?.("rw");
    try {
      await writeBootStateFiles(this.#o.bootDir, next);
    } finally {
      await this.#o.remount?.("ro");
    }
    if (rolled) await writeFile(join(stagingDir(this.#o.stateDir), "rollback.json"), `${JSON.stringify({ slot: rolled, reason: `rolled back by ${caller.subject}` })}\n`);
    this.#audit(`update rollback from ${caller.subject}: ${rolled ? `try of slot ${rolled} cancelled, ` : ""}next boot runs slot ${next.active}`);
    return `ok next=${next.active}`;
  }

  async #rollbackReason(slot: Slot): Promise<string> {
    try {
      const record = JSON.parse(await readFile(join(stagingDir(this.#o.stateDir), "rollback.json"), "utf8")) as { slot?: unknown; reason?: unknown };
      if (record.slot === slot && typeof record.reason === "string") return record.reason.replace(/\s+/g, "_");
    } catch {
      // no record of ours: U-Boot rolled it back, or the root task did not confirm the try
    }
    const known = await this.#o.rollbackReason?.(slot);
    return known ? known.replace(/\s+/g, "_") : "tries_ran_out";
  }
}

async function readRange(path: string, position: number, length: number): Promise<Uint8Array> {
  const file = await open(path, "r");
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await file.read(buf, 0, length, position);
    return buf.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

/**
 * A slot's version, from its `manifest.json` (`version`, `0.0.0` when the
 * manifest has none; `none` when the slot has no readable manifest).
 *
 * @example
 * ```ts
 * await slotVersion("/boot", "b"); // "1.2.0"
 * ```
 */
export async function slotVersion(bootDir: string, slot: Slot): Promise<string> {
  let text: string;
  try {
    const bytes = await readFile(join(bootDir, slot, SLOT_FILES.manifest));
    if (bytes.length > 1 << 20) return "none";
    text = bytes.toString("utf8");
  } catch {
    return "none";
  }
  try {
    const v = (JSON.parse(text) as { version?: unknown }).version;
    if (v === undefined) return "0.0.0";
    return typeof v === "string" && /^[0-9]+(\.[0-9]+){0,3}$/.test(v) ? v : "none";
  } catch {
    return "none";
  }
}
