/**
 * The commands that talk to a running appliance over 9P: ls, cat, tail,
 * write, stat, ctl. Each dials `--addr`, mints a queen ticket from `--key`,
 * attaches, does one thing, and clunks what it walked.
 * @module
 */
import { setTimeout as sleep } from "node:timers/promises";
import { InvalidError, NineClient, NineError, PermissionError, QidType, dialWithRetry, parseDialString, type DialAddress, type Dialect, type Fid, type FileInfo } from "../nine-door/index.ts";
import { CTR_MAX_STEP, isEnvelope, mintTicket, signEnvelope } from "../root-task/index.ts";
import { str, UsageError, type Parsed } from "./args.ts";
import { explainTimeout, resolveAddress, timeoutMsOf, type ResolvedAddress } from "./address.ts";
import { CtlCounterFile, ctlCountersPath, type CtlCounterStore } from "./ctl-counter.ts";
import { knownHostsPath, trustCertificate } from "./known-hosts.ts";
import { explainAttach, plainPort, readQueenKey } from "./hints.ts";
import { defaultQueenKey } from "./paths.ts";
import { fileJson } from "./records.ts";
import type { Io } from "./verb.ts";

/** The options every remote command takes are declared in options.ts (REMOTE_OPTIONS). */

/** A queen session: the client, its attached root, the queen key and where it dialled. */
export interface QueenSession {
  readonly client: NineClient;
  readonly root: Fid;
  readonly key: Uint8Array;
  readonly address: ResolvedAddress;
}

/** Lifetime of the queen ticket a one-shot command attaches with, seconds. */
export const COMMAND_TICKET_TTL_S = 300;
/**
 * Lifetime of the queen ticket of a long session (`cohesix sh`, `tail -f`),
 * seconds: the appliance ends a session when its ticket expires, so these
 * run for 24 h at most and then end with `closed: ticket expired …`.
 */
export const SESSION_TICKET_TTL_S = 24 * 3600;

/**
 * Connects and attaches as the queen. The address is `--addr`, then
 * `COHESIX_ADDR`, then the one appliance this folder runs; `--timeout S`
 * (or `COHESIX_TIMEOUT`) bounds the connect, the attach and each request.
 * The ticket lasts `options.ttlS` (default {@link COMMAND_TICKET_TTL_S}).
 *
 * @example
 * ```ts
 * const { client, root } = await connectQueen(parsed, process.env, { ttlS: SESSION_TICKET_TTL_S });
 * ```
 */
export async function connectQueen(p: Parsed, env: NodeJS.ProcessEnv, options: { ttlS?: number } = {}): Promise<QueenSession> {
  const address = resolveAddress({ ...(str(p, "addr") !== undefined ? { addr: str(p, "addr")! } : {}), env });
  const addr = dialAddress(address.dialString);
  const timeoutMs = timeoutMsOf({ ...(str(p, "timeout") !== undefined ? { timeout: str(p, "timeout")! } : {}), env });
  const keyPath = str(p, "key", env.COHESIX_KEY ?? defaultQueenKey(env));
  if (keyPath === undefined) throw new UsageError("--key is required: give --key FILE or set COHESIX_KEY");
  const dialectArg = str(p, "dialect", "9P2000");
  if (dialectArg !== "9P2000" && dialectArg !== "9P2000.L") throw new UsageError("--dialect must be 9P2000 or 9P2000.L");
  const dialect: Dialect = dialectArg;
  const key = await readQueenKey(keyPath);
  const pin = str(p, "pin", env.COHESIX_PIN);
  // TLS: the pinned certificate (known_hosts, or --pin), which also tells
  // the appliance's boot key id, the audience the ticket must name.
  const trust = addr.kind === "tls" ? await trustCertificate(addr, { path: knownHostsPath(env), ...(pin ? { pin } : {}) }) : undefined;
  try {
    let client: NineClient | undefined;
    let ticket = "";
    for (let attempt = 1, delay = 100; client === undefined; attempt++, delay *= 2) {
      // No settle wait after connecting (dialWithRetry's default, 50 ms on
      // every command): the version exchange is the check, and a connection
      // closed during it (QEMU's port forward while the guest boots) is
      // dialled again.
      const conn = await dialWithRetry(addr, { attempts: 5, delayMs: 100, timeoutMs, settleMs: 0, ...(pin ? { pin } : {}), ...(trust ? { checkCertificate: trust.check } : {}) });
      // Pinned at the handshake, as ssh does, whether or not the attach succeeds.
      await trust?.remember((line) => void process.stderr.write(line)).catch((err: unknown) => {
        conn.destroy();
        throw err;
      });
      const aud = trust?.audience();
      ticket = mintTicket({ role: "queen", sub: "queen", ...(aud !== undefined ? { aud } : {}) }, key, { ttlS: options.ttlS ?? COMMAND_TICKET_TTL_S });
      try {
        client = await NineClient.connect(conn, { dialect, timeoutMs });
      } catch (err) {
        conn.destroy();
        if (attempt >= 5 || !(err instanceof NineError) || err.errorClass !== "closed") throw err;
        await sleep(delay);
      }
    }
    try {
      return { client, root: await client.attach({ uname: "queen", aname: ticket }), key, address };
    } catch (err) {
      // A refused attach must not leave the socket holding the process open.
      client.close();
      throw err;
    }
  } catch (err) {
    // What to do, in one line: a plain port dialled with TLS, a refused key or clock, a silent appliance.
    const plain = addr.kind === "tls" ? plainPort(err, `tls!${addr.host}!${addr.port}`) : tlsPort(err, addr);
    throw explainTimeout(explainAttach(plain, { keyPath, key }), address);
  }
}

/**
 * A TLS listener closes on a plain 9P Tversion without a word: name the
 * likely cause when a tcp! address does that (off loopback an appliance
 * serves TLS by default).
 */
function tlsPort(err: unknown, addr: DialAddress): unknown {
  if (addr.kind !== "tcp" || !(err instanceof NineError) || err.errorClass !== "closed" || !/version negotiation/.test(err.message)) return err;
  return new NineError("closed", `${err.detail} (if the appliance serves TLS, as it does off loopback by default, dial tls!${addr.host}!${addr.port})`, { cause: err });
}

/** A malformed `--addr` is the user's typing, so a usage error (exit 2). */
function dialAddress(text: string): DialAddress {
  try {
    return parseDialString(text);
  } catch (err) {
    throw new UsageError(`--addr ${(err as Error).message.replace(/^invalid: /, "")}`);
  }
}

/**
 * Connects as the queen with the parsed remote options,
 * runs `fn` and closes the session; a timeout inside `fn` is explained
 * like one while connecting.
 *
 * @example
 * ```ts
 * await withQueen(p, env, async (root, p) => root.readText(p.positionals[0]!.slice(1)));
 * ```
 */
export async function withQueen<T>(p: Parsed, env: NodeJS.ProcessEnv, fn: (root: Fid, p: Parsed, key: Uint8Array, session: QueenSession) => Promise<T>): Promise<T> {
  // A following session (tail -f) outlives a one-shot command's ticket.
  const session = await connectQueen(p, env, p.values.follow === true ? { ttlS: SESSION_TICKET_TTL_S } : {});
  const { client, root, key, address } = session;
  try {
    return await fn(root, p, key, session);
  } catch (err) {
    throw explainTimeout(err, address);
  } finally {
    client.close();
  }
}

function rel(path: string): string {
  if (!path.startsWith("/")) throw new UsageError(`path ${JSON.stringify(path)} must be absolute, e.g. /proc/boot`);
  return path.slice(1);
}

function formatMode(info: FileInfo): string {
  const kind = info.isDir ? "d" : info.isAppend ? "a" : "-";
  const bits = info.mode & 0o777;
  const rwx = (n: number) => `${n & 4 ? "r" : "-"}${n & 2 ? "w" : "-"}${n & 1 ? "x" : "-"}`;
  return kind + rwx(bits >> 6) + rwx((bits >> 3) & 7) + rwx(bits & 7);
}

/** `ls [-l] PATH`: one name per line, directories with a trailing `/`. */
export function ls(parsed: Parsed, { env, out }: Io): Promise<void> {
  return withQueen(parsed, env, async (root, p) => {
    const path = p.positionals[0] ?? "/";
    const f = await root.walk(rel(path));
    try {
      if (p.values.json === true) {
        out(`${JSON.stringify(await lsJson(root, path, f))}\n`);
        return;
      }
      if (!f.isDir) {
        const st = await f.stat();
        out(p.values.long ? `${formatMode(st)} ${st.length} ${path}\n` : `${path}\n`);
        return;
      }
      const entries = (await f.readdir()).sort((a, b) => a.name.localeCompare(b.name));
      for (const e of entries) {
        if (!p.values.long) {
          out(`${e.name}${e.isDir ? "/" : ""}\n`);
          continue;
        }
        const st = await root.statPath(`${rel(path)}/${e.name}`);
        out(`${formatMode(st)} ${String(st.length).padStart(8)} ${new Date(st.mtime * 1000).toISOString()} ${e.name}${e.isDir ? "/" : ""}\n`);
      }
    } finally {
      await f.clunk();
    }
  });
}

/** One entry of `ls --json`. */
export interface LsEntry {
  readonly name: string;
  readonly type: "dir" | "append" | "file";
  /** `drwxr-xr-x`, as `ls -l` shows it. */
  readonly mode: string;
  readonly length: number;
  /** ISO 8601. */
  readonly mtime: string;
}

function lsEntry(name: string, st: FileInfo): LsEntry {
  return { name, type: st.isDir ? "dir" : st.isAppend ? "append" : "file", mode: formatMode(st), length: st.length, mtime: new Date(st.mtime * 1000).toISOString() };
}

/** `ls --json`: the directory's entries sorted by name (or the file's own), each with its stat. */
async function lsJson(root: Fid, path: string, f: Fid): Promise<LsEntry[]> {
  if (!f.isDir) return [lsEntry(path, await f.stat())];
  const entries = (await f.readdir()).sort((a, b) => a.name.localeCompare(b.name));
  const out: LsEntry[] = [];
  for (const e of entries) out.push(lsEntry(e.name, await root.statPath(`${rel(path)}/${e.name}`)));
  return out;
}

/**
 * `cat PATH...`: contents to stdout. With `--json`, a `key=value` or JSON
 * file as JSON (see records.ts); several paths give an object keyed by path.
 */
export function cat(parsed: Parsed, { env, out }: Io): Promise<void> {
  const json = parsed.values.json === true;
  const collected: Record<string, unknown> = {};
  return withQueen(parsed, env, async (root, p) => {
    for (const path of p.positionals) {
      // A directory read answers packed stat records: never print those as text.
      const data = await readWhole(root, path);
      if (json) collected[path] = fileJson(Buffer.from(data).toString("utf8"));
      else out(data);
    }
    if (json) out(`${JSON.stringify(p.positionals.length === 1 ? collected[p.positionals[0]!] : collected)}\n`);
  });
}

/**
 * Reads the whole file at `path` below `root`. Append-only files may block
 * at their end (a GPU's lease and status, a log): those are read up to the
 * length stat reports now. A directory is refused, naming `lsCommand` as the
 * way to list it.
 *
 * @example
 * ```ts
 * const text = (await readWhole(root, "/proc/lifecycle/state")).toString("utf8");
 * ```
 */
export async function readWhole(root: Fid, path: string, lsCommand = "cohesix ls"): Promise<Buffer> {
  return root.with(rel(path), async (f) => {
    if (f.isDir) throw new InvalidError(`${path} is a directory: use ${lsCommand} ${path}`);
    if ((f.qid.type & QidType.APPEND) === 0) return (await f.open("r")).readAll(0);
    const { length } = await f.stat();
    await f.open("r");
    const parts: Uint8Array[] = [];
    for (let at = 0; at < length; ) {
      const data = await f.read(at, length - at);
      if (data.length === 0) break;
      parts.push(data);
      at += data.length;
    }
    return Buffer.concat(parts);
  });
}

/** Options of `printFrom`. */
export interface PrintFromOptions {
  /** Keep reading appends until `signal` aborts; without it, stop at the end. */
  readonly follow?: boolean;
  readonly signal?: AbortSignal;
  /** Poll interval at the end of the file, ms; default 250. */
  readonly intervalMs?: number;
}

/**
 * Prints what the open file `f` holds from `offset` to its end; with
 * `follow`, keeps printing appends until `signal` aborts.
 *
 * @example
 * ```ts
 * await printFrom(f, 0, out, { follow: true, signal });
 * ```
 */
export async function printFrom(f: Fid, offset: number, out: (data: string | Uint8Array) => void, options: PrintFromOptions = {}): Promise<void> {
  const { signal } = options;
  // A read at the end may block until the next append: give it a signal of
  // its own so the per-request timeout does not cut it short.
  const follow = signal ?? new AbortController().signal;
  for (let at = offset; ; ) {
    const data = await f.read(at, undefined, options.follow ? follow : undefined).catch((err: unknown) => {
      if (signal?.aborted) return new Uint8Array(0);
      throw err;
    });
    if (data.length > 0) {
      out(data);
      at += data.length;
      continue;
    }
    if (!options.follow || signal?.aborted) return;
    // Append logs answer empty at their end; poll gently.
    await sleep(options.intervalMs ?? 250, undefined, signal ? { signal } : {}).catch(() => {});
    if (signal?.aborted) return;
  }
}

/** `tail [-f] [-n N] PATH`: the last lines; with -f, follow appends until interrupted. */
export function tail(parsed: Parsed, { env, out, signal }: Io): Promise<void> {
  return withQueen(parsed, env, async (root, p) => {
    const lines = Number(str(p, "lines", "10"));
    if (!Number.isSafeInteger(lines) || lines < 0) throw new UsageError("-n must be a non-negative integer");
    const intervalMs = Number(str(p, "interval", "250"));
    const f = await root.walk(rel(p.positionals[0]!));
    try {
      await f.open("r");
      const text = (await f.readAll(0)).toString("utf8");
      const offset = Buffer.byteLength(text);
      const all = text.split("\n");
      if (all[all.length - 1] === "") all.pop();
      const shown = lines === 0 ? [] : all.slice(-lines);
      if (shown.length > 0) out(shown.join("\n") + "\n");
      if (!p.values.follow) return;
      await printFrom(f, offset, out, { follow: true, intervalMs, ...(signal ? { signal } : {}) });
    } finally {
      await f.clunk().catch(() => {});
    }
  });
}

/**
 * The JSON command a signed envelope carries for a write to a ctl file
 * that changes state, or undefined for any other file: `/queen/ctl` takes
 * JSON as written, `/queen/lifecycle/ctl` takes `cordon` as
 * `{"lifecycle":"cordon"}`, `/worker/<id>/ctl` takes `kill` as `{"kill":"<id>"}`,
 * `/update/ctl` takes JSON as written.
 */
export function signableCommand(path: string, text: string): string | undefined {
  const json = text.trimStart().startsWith("{");
  if (path === "/queen/ctl" || path === "/update/ctl") return text;
  if (path === "/queen/lifecycle/ctl") return json ? text : JSON.stringify({ lifecycle: text.trim() });
  const worker = /^\/worker\/([^/]+)\/ctl$/.exec(path);
  if (worker) return json ? text : text.trim() === "kill" ? JSON.stringify({ kill: worker[1] }) : text;
  return undefined;
}

/** Whether the appliance runs `--policy signed-ctl` (its /proc/boot says so). */
async function signedPolicy(root: Fid): Promise<boolean> {
  return /^policy=signed-ctl$/m.test(await root.readText("proc/boot"));
}

/** The last counter the appliance accepted, from /queen/ctr. */
async function readCtr(root: Fid): Promise<number> {
  const last = Number((await root.readText("queen/ctr")).trim());
  return Number.isSafeInteger(last) && last >= 0 ? last : 0;
}

/** Wraps `command` in an envelope with the counter after /queen/ctr. */
async function envelopeFor(root: Fid, command: string, key: Uint8Array): Promise<string> {
  return signEnvelope(command, key, { ctr: (await readCtr(root)) + 1 });
}

/**
 * The counter file's entry for the appliance a session dialled and its
 * queen key (see ctl-counter.ts).
 *
 * @example
 * ```ts
 * await withQueen(p, env, (root, p, key, session) => sendCtl(root, key, json, { counter: ctlCounterOf(env, session) }));
 * ```
 */
export function ctlCounterOf(env: NodeJS.ProcessEnv, session: Pick<QueenSession, "address" | "key">): CtlCounterStore {
  return new CtlCounterFile(ctlCountersPath(env), { dial: session.address.dialString, key: session.key });
}

/**
 * Signs of a stale counter: attempts of one signed ctl while the counter
 * re-read after each refusal shows another queen moved it in between.
 */
const CTL_ATTEMPTS = 4;

/**
 * `write PATH TEXT`: one write of TEXT (a newline is not added). Under
 * `--policy signed-ctl`, a command for a ctl file that changes state is
 * signed first (see {@link signableCommand}); an envelope is sent as is.
 */
export function write(parsed: Parsed, { env }: Io): Promise<void> {
  return withQueen(parsed, env, async (root, p, key) => {
    const [path, given] = p.positionals as [string, string];
    const command = isEnvelope(given) ? undefined : signableCommand(path, given);
    const text = command !== undefined && (await signedPolicy(root)) ? await envelopeFor(root, command, key) : given;
    await root.with(rel(path), async (f) => {
      await f.open("w");
      await f.write(text);
    });
  });
}

/** `stat PATH`: key=value lines. */
export function stat(parsed: Parsed, { env, out }: Io): Promise<void> {
  return withQueen(parsed, env, async (root, p) => {
    const path = p.positionals[0]!;
    const st = await root.statPath(rel(path));
    out(
      [
        `name=${st.name}`,
        `path=${path}`,
        `mode=${formatMode(st)}`,
        `length=${st.length}`,
        `mtime=${new Date(st.mtime * 1000).toISOString()}`,
        `qid.path=${st.qid.path}`,
        `qid.version=${st.qid.version}`,
        `qid.type=0x${st.qid.type.toString(16)}`,
        "",
      ].join("\n"),
    );
  });
}

/** Options of {@link sendCtl}. */
export interface SendCtlOptions {
  /** The ctl file; default `/queen/ctl`. */
  readonly path?: string;
  /** Send the command as is, without a signed-ctl envelope. */
  readonly unsigned?: boolean;
  /**
   * Where the last accepted counter is kept (see {@link ctlCounterOf});
   * without one, every signed command reads /queen/ctr first.
   */
  readonly counter?: CtlCounterStore;
}

/**
 * Writes one JSON command to a ctl file and resolves with the reply read
 * back on the same fid. The command is signed as a `signed-ctl` envelope
 * with the queen key — always for /queen/ctl, for the other ctl files that
 * change state when the appliance runs `--policy signed-ctl` — unless
 * `unsigned`. Its counter is the one after the counter store's (so in
 * steady state a ctl is one walk, open, write, read and clunk), or after
 * /queen/ctr when the store knows none. A counter refused because it is
 * not the appliance's next (`permission:` or `invalid:`, and /queen/ctr,
 * read again, shows another queen moved it) is signed again after the one
 * read and sent again; the store then remembers the counter accepted.
 * `ctl`, `spawn`, `kill` and the shell all send through here.
 *
 * @example
 * ```ts
 * await sendCtl(root, key, '{"spawn":"heartbeat","ticks":10}', { counter }); // '{"ok":true,"worker":"worker-3"}'
 * ```
 */
export async function sendCtl(root: Fid, key: Uint8Array, command: string, options: SendCtlOptions = {}): Promise<string> {
  const path = options.path ?? "/queen/ctl";
  try {
    JSON.parse(command);
  } catch (err) {
    throw new InvalidError(`not JSON: ${(err as Error).message}`);
  }
  // /queen/ctl is always signed; the other ctl files that change state
  // when the appliance demands it (--policy signed-ctl).
  const signed = options.unsigned !== true && (path === "/queen/ctl" || (signableCommand(path, command) !== undefined && (await signedPolicy(root))));
  const { counter } = options;
  let ctr = 0;
  if (signed) ctr = ((await counter?.last()) ?? (await readCtr(root))) + 1;
  let text = signed ? signEnvelope(command, key, { ctr }) : command;
  return root.with(rel(path), async (f) => {
    await f.open("rw");
    for (let attempt = 1; ; attempt++) {
      try {
        await f.write(text);
        break;
      } catch (err) {
        // The refusal's class, then the counter itself, say whether ours was stale.
        if (!signed || attempt >= CTL_ATTEMPTS || !(err instanceof PermissionError || err instanceof InvalidError)) throw err;
        const last = await readCtr(root);
        if (ctr > last && ctr <= last + CTR_MAX_STEP) throw err;
        ctr = last + 1;
        text = signEnvelope(command, key, { ctr });
      }
    }
    if (signed) await counter?.accepted(ctr);
    return (await readReply(f)).toString("utf8").trim();
  });
}

/** The reply on an open ctl fid: one read, unless it filled the whole read. */
async function readReply(f: Fid): Promise<Buffer> {
  const first = await f.read(0);
  if (first.length < f.client.iounit) return Buffer.from(first);
  return Buffer.concat([first, await f.readAll(first.length)]);
}

/**
 * What `ctl` prints for a reply: the worker id when the reply names one,
 * else the reply as is.
 *
 * @example
 * ```ts
 * ctlPrinted('{"ok":true,"worker":"worker-3"}'); // "worker-3"
 * ```
 */
export function ctlPrinted(reply: string): string {
  try {
    const obj = JSON.parse(reply) as { worker?: unknown };
    if (typeof obj.worker === "string") return obj.worker;
  } catch {
    // Not JSON: print as is.
  }
  return reply;
}

/**
 * `ctl JSON`: writes one command to /queen/ctl (or `--file PATH`) and reads the reply on the
 * same fid (see {@link sendCtl}). Prints the worker id when the reply names one, else the reply.
 */
export function ctl(parsed: Parsed, { env, out }: Io): Promise<void> {
  return withQueen(parsed, env, async (root, p, key, session) => {
    const reply = await sendCtl(root, key, p.positionals[0]!, { path: str(p, "file", "/queen/ctl")!, unsigned: p.values.unsigned === true, counter: ctlCounterOf(env, session) });
    if (p.values.json === true) {
      // The reply as the appliance sent it; a reply that is not JSON is wrapped.
      let value: unknown;
      try {
        value = JSON.parse(reply);
      } catch {
        value = { reply };
      }
      out(`${JSON.stringify(value)}\n`);
      return;
    }
    const printed = ctlPrinted(reply);
    if (printed) out(`${printed}\n`);
  });
}
