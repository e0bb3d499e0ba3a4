/**
 * `cohesix update`: the host side of a field update, a client of the
 * appliance's queen-only `/update/` directory (docs/updates.md).
 *
 * - `update FILE`: `begin` (the appliance answers the verified offset to
 *   resume from), the bundle's bytes into `data` from there, `commit`, and
 *   `reboot` unless `--no-reboot`. A dropped connection is dialled again
 *   with backoff and the transfer resumes from the offset the appliance
 *   verified, not from zero.
 * - `update --status`: both slots (state, version), the running one, and
 *   the transfer.
 * - `update --rollback`: cancel a pending try, or switch to the other good
 *   slot (rebooting into it unless `--no-reboot`).
 * @module
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { progressBar, type ProgressBar } from "../flash/index.ts";
import { InvalidError, NineError, type Fid } from "../nine-door/index.ts";
import { bundleHeaderLength, parseBundleHeader, type BundleHeader } from "../update/index.ts";
import { str, UsageError, type Parsed } from "./args.ts";
import { connectQueen, sendCtl, type QueenSession } from "./remote.ts";
import type { Io } from "./verb.ts";

/** How many times a lost connection is dialled again before the update gives up. */
export const UPDATE_RECONNECTS = 8;
/** The first wait before dialling again, doubled each time up to {@link UPDATE_BACKOFF_MAX_MS}. */
export const UPDATE_BACKOFF_MS = 250;
export const UPDATE_BACKOFF_MAX_MS = 5000;
const CTL = "/update/ctl";
/**
 * How long the commit's reply may take: the appliance checks the whole
 * staged bundle again and writes and syncs a slot's worth of bytes, which
 * takes far longer than one request's `--timeout` on an SD card or an
 * emulated board (an 80 MB slot under QEMU: well over 10 s).
 */
export const UPDATE_COMMIT_TIMEOUT_MS = 600_000;

/** A local bundle: its header (unchecked: the appliance checks the signature), size and whole-file sha256. */
interface LocalBundle {
  readonly path: string;
  readonly header: BundleHeader;
  readonly size: number;
  readonly sha256: string;
}

async function inspect(path: string): Promise<LocalBundle> {
  const file = await open(path, "r").catch((err: NodeJS.ErrnoException) => {
    throw err.code === "ENOENT" ? new NineError("not found", `bundle ${path}: no such file (build one with cohesix bundle)`) : err;
  });
  try {
    const { size } = await file.stat();
    const prefix = Buffer.alloc(Math.min(size, 20));
    await file.read(prefix, 0, prefix.length, 0);
    const head = Buffer.alloc(Math.min(size, bundleHeaderLength(prefix)));
    await file.read(head, 0, head.length, 0);
    const { header } = parseBundleHeader(head);
    const hash = createHash("sha256");
    for await (const chunk of file.createReadStream({ start: 0, autoClose: false, highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
    return { path, header, size, sha256: hash.digest("hex") };
  } catch (err) {
    throw err instanceof NineError ? new NineError(err.errorClass, `${path}: ${err.detail}`) : err;
  } finally {
    await file.close();
  }
}

/** `key=value` lines (a line may hold several, e.g. `rolled_back=b reason=…`). */
export function parseUpdateStatus(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    for (const word of line.trim().split(/\s+/)) {
      const eq = word.indexOf("=");
      if (eq > 0) out[word.slice(0, eq)] = word.slice(eq + 1);
    }
  }
  return out;
}

/** The values of an `ok k=v …` reply; anything else is the appliance speaking a protocol this client does not know. */
function okReply(reply: string, command: string): Record<string, string> {
  if (!/^ok( |$)/.test(reply)) throw new InvalidError(`${command}: unexpected reply ${JSON.stringify(reply.slice(0, 200))}`);
  return parseUpdateStatus(reply.slice(2));
}

/** Whether `err` is a lost connection (or a dial that may succeed later) rather than a refusal. */
function isTransient(err: unknown, session: QueenSession | undefined): boolean {
  if (session?.client.closed) return true;
  if (err instanceof UsageError) return false;
  if (!(err instanceof NineError)) return true; // ECONNRESET, ECONNREFUSED while the appliance restarts
  if (err.errorClass === "closed" || err.errorClass === "io") return true;
  // The dropped session's writer still holds /update/data until the appliance sees the disconnect.
  return err.errorClass === "busy" && /^\/update\/data is open by .*: one transfer at a time$/.test(err.detail);
}

/** Options `update FILE` runs with. */
interface Plan {
  /** Try boots; undefined leaves the appliance's default (update.default_tries). */
  readonly tries: number | undefined;
  readonly allowDowngrade: boolean;
  readonly reboot: boolean;
}

/**
 * Runs `fn` with a queen session, dialling again with backoff while the
 * failure is a lost connection; `onRetry` says why, once per retry. Up to
 * {@link UPDATE_RECONNECTS} retries in a row; a retry after `progress()`
 * moved starts the count and the backoff afresh.
 */
async function withReconnects<T>(p: Parsed, io: Io, fn: (s: QueenSession) => Promise<T>, onRetry: (err: unknown, delayMs: number) => void, progress: () => number = () => 0): Promise<T> {
  let attempt = 0;
  let delay = UPDATE_BACKOFF_MS;
  let mark = progress();
  for (;;) {
    let session: QueenSession | undefined;
    try {
      session = await connectQueen(p, io.env);
      return await fn(session);
    } catch (err) {
      if (progress() > mark) {
        mark = progress();
        attempt = 0;
        delay = UPDATE_BACKOFF_MS;
      }
      if (attempt >= UPDATE_RECONNECTS || !isTransient(err, session)) throw err;
      onRetry(err, delay);
      await sleep(delay);
      attempt++;
      delay = Math.min(delay * 2, UPDATE_BACKOFF_MAX_MS);
    } finally {
      session?.client.close();
    }
  }
}

/** A chunk the appliance refused: the local file differs from its own signed header. */
const DAMAGED_CHUNK = /^chunk \d+ \(bytes .*\) does not match the bundle's signed hash/;

/** {@link withReconnects} for the transfer: a refused chunk names the cure, since sending again sends the same bytes. */
async function sendAll<T>(p: Parsed, io: Io, fn: (s: QueenSession) => Promise<T>, onRetry: (err: unknown, delayMs: number) => void, progress: () => number, file: string): Promise<T> {
  try {
    return await withReconnects(p, io, fn, onRetry, progress);
  } catch (err) {
    if (err instanceof NineError && err.errorClass === "invalid" && DAMAGED_CHUNK.test(err.detail)) {
      throw new InvalidError(`${err.detail.replace(/: send again from offset \d+$/, "")}: ${file} is damaged (check it with cohesix image verify ${file}, or build it again)`);
    }
    throw err;
  }
}

/** Streams `bundle` from `from` into an open `data` fid, a chunk (at most an iounit) per write; `onSent` after each. */
async function stream(data: Fid, bundle: LocalBundle, from: number, onSent: (at: number) => void): Promise<void> {
  const piece = Math.max(1, Math.min(bundle.header.chunkSize, data.client.iounit));
  const file = await open(bundle.path, "r");
  try {
    const buffer = Buffer.alloc(piece);
    for (let at = from; at < bundle.size; ) {
      const { bytesRead } = await file.read(buffer, 0, Math.min(piece, bundle.size - at), at);
      if (bytesRead === 0) throw new InvalidError(`${bundle.path} became shorter while it was sent`);
      const n = await data.write(buffer.subarray(0, bytesRead), at);
      if (n === 0) throw new InvalidError(`the appliance took no bytes at offset ${at}`);
      at += n;
      onSent(at);
    }
  } finally {
    await file.close();
  }
}

/** `update FILE`: begin → data (resumed) → commit → reboot. */
async function sendBundle(p: Parsed, io: Io, file: string, plan: Plan): Promise<void> {
  const json = p.values.json === true;
  const bundle = await inspect(file);
  const bar: ProgressBar | undefined = io.tty && !json ? progressBar({ write: io.err, tty: true, ...(io.columns !== undefined ? { columns: io.columns } : {}) }) : undefined;
  const begins: number[] = [];
  let sent = 0;
  let at = 0;
  const note = (line: string) => {
    if (bar) io.err("\n");
    io.err(`update: ${line}\n`);
  };
  const retry = (err: unknown, delayMs: number) => note(`connection lost at ${at} bytes (${err instanceof Error ? err.message : String(err)}); dialling again in ${delayMs} ms`);
  const label = `sending ${bundle.header.version}`;
  const begin = JSON.stringify({ begin: { size: bundle.size, sha256: bundle.sha256, ...(plan.allowDowngrade ? { allowDowngrade: true } : {}) } });

  // Begin and stream; each new session begins again and resumes where the appliance's verified bytes end.
  await sendAll(
    p,
    io,
    async ({ root, key }) => {
      const reply = await sendCtl(root, key, begin, { path: CTL });
      const offset = Number(okReply(reply, "begin").offset);
      if (!Number.isSafeInteger(offset) || offset < 0 || offset > bundle.size) throw new InvalidError(`begin: the appliance answered offset ${JSON.stringify(reply)} for a ${bundle.size}-byte bundle`);
      begins.push(offset);
      at = offset;
      if (offset > 0 && begins.length > 1) note(`resuming at ${offset} bytes, verified by the appliance`);
      if (offset < bundle.size) {
        await root.with("update/data", async (data) => {
          await data.open("w");
          await stream(data, bundle, offset, (next) => {
            sent += next - at;
            at = next;
            bar?.update(label, at, bundle.size);
          });
        });
      }
    },
    retry,
    // Progress is what the appliance verified: a link that drops before any chunk completes still gives up.
    () => Math.max(0, ...begins),
    bundle.path,
  );
  bar?.finish(label, bundle.size);

  // Commit. After a lost connection the commit may have happened before its reply: the status tells.
  const commit = JSON.stringify({ commit: { ...(plan.tries !== undefined ? { tries: plan.tries } : {}), allowDowngrade: plan.allowDowngrade } });
  let lost = false;
  // What the status says once the staged bundle is gone: written into the other slot (a commit whose reply was lost), or not.
  const writtenBefore = async (root: Fid): Promise<Record<string, string> | undefined> => {
    const status = parseUpdateStatus(await root.readText("update/status"));
    if (status.transfer === "staged") return undefined;
    const other = status.slot === "a" ? "b" : "a";
    if (status[`${other}_state`] === "trying" && status[`${other}_version`] === bundle.header.version) return { slot: other, version: bundle.header.version };
    throw new InvalidError(`commit: the connection was lost and the appliance holds no staged bundle now (transfer=${status.transfer ?? "?"}): run cohesix update again`);
  };
  const committed = await withReconnects(
    p,
    io,
    async ({ root, key }) => {
      if (lost) {
        const done = await writtenBefore(root);
        if (done) return done;
      }
      // The commit's one request waits as long as the slot takes to check and write.
      if (root.client.timeoutMs > 0) root.client.timeoutMs = Math.max(root.client.timeoutMs, UPDATE_COMMIT_TIMEOUT_MS);
      try {
        return okReply(await sendCtl(root, key, commit, { path: CTL }), "commit");
      } catch (err) {
        // A commit sent again after a lost reply waits behind the first, and finds nothing staged once that one wrote the slot.
        if (lost && err instanceof NineError && err.errorClass === "invalid" && /^nothing staged/.test(err.detail)) {
          const done = await writtenBefore(root);
          if (done) return done;
        }
        throw err;
      }
    },
    (err, delayMs) => {
      lost = true;
      retry(err, delayMs);
    },
  );
  const slot = committed.slot ?? "?";
  const version = committed.version ?? bundle.header.version;
  const tries = Number(committed.tries ?? plan.tries ?? 0);

  if (!json) io.out(`slot ${slot}: version ${version} written, trying with ${tries} ${tries === 1 ? "try" : "tries"}\n`);
  const rebooting = plan.reboot
    ? await reboot(p, io).catch((err: unknown) => {
        if (!(err instanceof NineError)) throw err;
        throw new NineError(err.errorClass, `reboot: ${err.detail} (slot ${slot} is written and is tried at the appliance's next boot; --no-reboot skips this step)`);
      })
    : false;
  if (json) {
    io.out(`${JSON.stringify({ ok: true, slot, version, tries, size: bundle.size, sha256: bundle.sha256, sent, begins, rebooting })}\n`);
    return;
  }
  io.out(rebooting ? `rebooting: the appliance boots slot ${slot} next\n` : `not rebooted: slot ${slot} is tried at the appliance's next boot\n`);
}

/** Asks for a reboot; true once the appliance said so (or dropped the line doing it). The host board refuses. */
async function reboot(p: Parsed, io: Io): Promise<boolean> {
  const { client, root, key } = await connectQueen(p, io.env);
  try {
    okReply(await sendCtl(root, key, JSON.stringify({ reboot: true }), { path: CTL }), "reboot");
    return true;
  } catch (err) {
    // A reboot that cuts the connection before its reply is a reboot.
    if (client.closed || (err instanceof NineError && err.errorClass === "closed")) return true;
    throw err;
  } finally {
    client.close();
  }
}

/** What `--status` shows of `/update/status`. */
export function formatUpdateStatus(s: Record<string, string>): string {
  const lines: string[] = [];
  for (const slot of ["a", "b"]) {
    const running = s.slot === slot;
    const tries = running && s.state === "trying" ? `, ${s.tries_left ?? "?"} tries left` : "";
    lines.push(`slot ${slot}: ${s[`${slot}_state`] ?? "?"}, version ${s[`${slot}_version`] ?? "?"}${running ? ` (running${tries})` : ""}`);
  }
  const transfer = s.transfer ?? "?";
  lines.push(`transfer: ${transfer}${transfer === "idle" ? "" : `, ${s.received ?? "?"} of ${s.size ?? "?"} bytes verified`}`);
  if (s.rolled_back !== undefined) lines.push(`rolled back: slot ${s.rolled_back}${s.reason !== undefined ? ` (${s.reason})` : ""}`);
  return `${lines.join("\n")}\n`;
}

/** The status as JSON: numbers as numbers. */
function statusJson(s: Record<string, string>): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(s)) out[k] = /^(tries_left|received|size)$/.test(k) && /^\d+$/.test(v) ? Number(v) : v;
  return out;
}

async function showStatus(p: Parsed, io: Io): Promise<void> {
  const { client, root } = await connectQueen(p, io.env);
  try {
    const status = parseUpdateStatus(await root.readText("update/status"));
    io.out(p.values.json === true ? `${JSON.stringify(statusJson(status))}\n` : formatUpdateStatus(status));
  } finally {
    client.close();
  }
}

async function rollback(p: Parsed, io: Io, plan: Pick<Plan, "reboot">): Promise<void> {
  const { client, root, key } = await connectQueen(p, io.env);
  let next = "";
  let running = "";
  try {
    running = parseUpdateStatus(await root.readText("update/status")).slot ?? "";
    next = okReply(await sendCtl(root, key, JSON.stringify({ rollback: true }), { path: CTL }), "rollback").next ?? "";
  } finally {
    client.close();
  }
  // Cancelling a pending try leaves the running slot next: nothing to reboot into.
  const json = p.values.json === true;
  if (!json) io.out(`next boot: slot ${next}${next === running ? " (the running slot; the pending try is cancelled)" : ""}\n`);
  const rebooting =
    plan.reboot && next !== "" && next !== running
      ? await reboot(p, io).catch((err: unknown) => {
          if (!(err instanceof NineError)) throw err;
          throw new NineError(err.errorClass, `reboot: ${err.detail} (slot ${next} boots next; --no-reboot skips this step)`);
        })
      : false;
  if (json) {
    io.out(`${JSON.stringify({ ok: true, next, running, rebooting })}\n`);
    return;
  }
  if (next !== running) io.out(rebooting ? `rebooting into slot ${next}\n` : `not rebooted: slot ${next} runs at the appliance's next boot\n`);
}

/**
 * `update FILE [--no-reboot] [--allow-downgrade] [--tries N]`,
 * `update --status`, `update --rollback [--no-reboot]`.
 *
 * @example
 * ```ts
 * await main(["update", "cohesix-1.2.0.bundle", "--addr", "tcp!127.0.0.1!5640"], io); // "slot b: version 1.2.0 written, trying with 3 tries\n…"
 * ```
 */
export async function update(p: Parsed, io: Io): Promise<void> {
  const file = p.positionals[0];
  const modes = [file !== undefined, p.values.status === true, p.values.rollback === true].filter(Boolean).length;
  if (modes !== 1) throw new UsageError("give a bundle FILE, --status or --rollback (one of them)");
  const triesText = str(p, "tries");
  const tries = triesText === undefined ? undefined : Number(triesText);
  if (tries !== undefined && (!Number.isSafeInteger(tries) || tries < 1 || tries > 9)) throw new UsageError("--tries must be a whole number from 1 to 9 (the boot state keeps one digit)");
  const reboot = p.values["no-reboot"] !== true;
  try {
    if (p.values.status === true) return await showStatus(p, io);
    if (p.values.rollback === true) return await rollback(p, io, { reboot });
    return await sendBundle(p, io, resolve(file!), { tries, allowDowngrade: p.values["allow-downgrade"] === true, reboot });
  } catch (err) {
    throw explainMissing(err);
  }
}

/** An appliance without `/update/` answers `not found: update`: say why it may lack one. */
function explainMissing(err: unknown): unknown {
  if (!(err instanceof NineError) || err.errorClass !== "not found" || !/^update(\/(ctl|data|status))?$/.test(err.detail)) return err;
  return new NineError(
    "not found",
    `${err.detail}: this appliance publishes no /update/ (it runs from an image without A/B slots, made without cohesix image --ab, or is a host board served without --boot-dir DIR --release-pub FILE)`,
  );
}
