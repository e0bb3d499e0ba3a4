/**
 * Ed25519 keys for Cohesix: generation, the one-line text key files written
 * by `cohesix keygen`, and a short fingerprint for logs.
 *
 * Key files are single text lines so they survive copy-paste, YAML and
 * kernel command lines:
 *
 * ```text
 * cohesix-ed25519-private <base64url 32-byte seed> [label]
 * cohesix-ed25519-public <base64url 32-byte key> [label]
 * ```
 *
 * The private file is created with mode 0600 (never wider, not even for a
 * moment) and is refused on read when group or other may read it.
 *
 * Signing and verifying are synchronous (ticket verification at attach
 * needs no promise) and run in `node:crypto` (OpenSSL's Ed25519): a
 * pure-JavaScript Ed25519 builds a table of base-point multiples on its
 * first use, which under the guest's emulated CPU took ~0.7 s of every
 * boot, and verified a ticket in ~100 ms where OpenSSL takes ~10 ms.
 *
 * @example
 * ```ts
 * import { writeKeyPair, readPrivateKey, keyId } from "./keys.ts";
 * const { publicKey } = await writeKeyPair(".cohesix/keys", { name: "queen" });
 * console.log(`queen key ${keyId(publicKey)}`);
 * const seed = await readPrivateKey(".cohesix/keys/queen.key");
 * ```
 * @module
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign as signWith, verify as verifyWith, type KeyObject } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { lstat, mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { BusyError, InvalidError, NotFoundError, PermissionError } from "../nine-door/index.ts";

/** DER before a raw Ed25519 seed in PKCS #8 (RFC 8410), and before a raw public key in SubjectPublicKeyInfo. */
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

function privateKeyObject(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
}

/**
 * Whether 32 bytes encode a point's y coordinate canonically (y < 2^255 − 19,
 * sign bit aside): RFC 8032 §5.1.3 refuses the others, OpenSSL reduces them.
 */
function canonicalPoint(bytes: Uint8Array): boolean {
  if ((bytes[31]! & 0x7f) !== 0x7f) return true;
  for (let i = 30; i > 0; i--) if (bytes[i] !== 0xff) return true;
  return bytes[0]! < 0xed;
}

/**
 * Length in bytes of a private key (the Ed25519 seed) and of a public key.
 *
 * @example
 * ```ts
 * (await generateKeyPair()).publicKey.length === KEY_BYTES; // true
 * ```
 */
export const KEY_BYTES = 32;
/**
 * Length in bytes of an Ed25519 signature.
 *
 * @example
 * ```ts
 * sign(message, privateKey).length === SIGNATURE_BYTES; // true
 * ```
 */
export const SIGNATURE_BYTES = 64;

const PRIVATE_TAG = "cohesix-ed25519-private";
const PUBLIC_TAG = "cohesix-ed25519-public";
const BASE64URL = /^[A-Za-z0-9_-]*$/;
const LABEL = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/**
 * An Ed25519 key pair: `privateKey` is the 32-byte seed, `publicKey` the
 * 32-byte encoded point.
 *
 * @example
 * ```ts
 * const pair: KeyPair = await generateKeyPair();
 * pair.privateKey.length; // 32
 * ```
 */
export interface KeyPair {
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

/**
 * Makes a fresh key pair from the operating system's random source.
 *
 * @example
 * ```ts
 * const { privateKey, publicKey } = await generateKeyPair();
 * ```
 */
export async function generateKeyPair(): Promise<KeyPair> {
  const privateKey = new Uint8Array(randomBytes(KEY_BYTES));
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/**
 * The public key belonging to a 32-byte private key (seed).
 *
 * @example
 * ```ts
 * const pub = publicKeyOf(await readPrivateKey("keys/queen.key"));
 * ```
 */
export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  checkLength(privateKey, KEY_BYTES, "private key");
  const spki = createPublicKey(privateKeyObject(privateKey)).export({ format: "der", type: "spki" });
  return new Uint8Array(spki.subarray(SPKI_PREFIX.length));
}

/**
 * Signs `message` with a 32-byte private key; returns the 64-byte signature.
 *
 * @example
 * ```ts
 * const sig = sign(new TextEncoder().encode("hello"), pair.privateKey);
 * ```
 */
export function sign(message: Uint8Array, privateKey: Uint8Array): Uint8Array {
  checkLength(privateKey, KEY_BYTES, "private key");
  return new Uint8Array(signWith(null, message, privateKeyObject(privateKey)));
}

/**
 * Whether `signature` is a valid signature of `message` by `publicKey`.
 * Never throws: malformed keys or signatures simply do not verify. Uses
 * RFC 8032 strict checking (not ZIP-215), so a signature has one encoding.
 *
 * @example
 * ```ts
 * verifySignature(sig, message, pair.publicKey); // true
 * ```
 */
export function verifySignature(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_BYTES || publicKey.length !== KEY_BYTES) return false;
  if (!canonicalPoint(publicKey) || !canonicalPoint(signature.subarray(0, 32))) return false;
  try {
    const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: "der", type: "spki" });
    return verifyWith(null, message, key, signature);
  } catch {
    return false;
  }
}

/**
 * A short, stable fingerprint of a public key for logs and error messages:
 * the first 8 bytes of its SHA-256, in hex.
 *
 * @example
 * ```ts
 * keyId(pair.publicKey); // "3f9a0c1d22e4b871"
 * ```
 */
export function keyId(publicKey: Uint8Array): string {
  return createHash("sha256").update(publicKey).digest("hex").slice(0, 16);
}

/**
 * Options for formatting a key file line.
 *
 * @example
 * ```ts
 * const opts: KeyFileOptions = { label: "queen@lab" };
 * ```
 */
export interface KeyFileOptions {
  /** Printable ASCII appended after the key, like an ssh key comment. */
  readonly label?: string;
}

/**
 * The text of a private key file (one line, newline-terminated).
 *
 * @example
 * ```ts
 * formatPrivateKey(pair.privateKey, { label: "queen" });
 * // "cohesix-ed25519-private 3q2-7w…Aa queen\n"
 * ```
 */
export function formatPrivateKey(privateKey: Uint8Array, options: KeyFileOptions = {}): string {
  checkLength(privateKey, KEY_BYTES, "private key");
  return formatLine(PRIVATE_TAG, privateKey, options.label);
}

/**
 * The text of a public key file (one line, newline-terminated).
 *
 * @example
 * ```ts
 * formatPublicKey(pair.publicKey); // "cohesix-ed25519-public …\n"
 * ```
 */
export function formatPublicKey(publicKey: Uint8Array, options: KeyFileOptions = {}): string {
  checkLength(publicKey, KEY_BYTES, "public key");
  return formatLine(PUBLIC_TAG, publicKey, options.label);
}

/**
 * A key read back from its text form.
 *
 * @example
 * ```ts
 * const { key, label } = parsePublicKey(text);
 * ```
 */
export interface ParsedKey {
  readonly key: Uint8Array;
  readonly label?: string;
}

/**
 * Parses the text of a private key file. Throws InvalidError naming
 * `options.source` (a path or description) when the text is not one.
 *
 * @example
 * ```ts
 * const { key } = parsePrivateKey("cohesix-ed25519-private AAAA…\n");
 * ```
 */
export function parsePrivateKey(text: string, options: { source?: string } = {}): ParsedKey {
  return parseLine(text, "private", options.source ?? "private key");
}

/**
 * Parses the text of a public key file. Throws InvalidError naming
 * `options.source` when the text is not one.
 *
 * @example
 * ```ts
 * const { key } = parsePublicKey("cohesix-ed25519-public AAAA…\n");
 * ```
 */
export function parsePublicKey(text: string, options: { source?: string } = {}): ParsedKey {
  return parseLine(text, "public", options.source ?? "public key");
}

/**
 * Options for {@link writeKeyPair}.
 *
 * @example
 * ```ts
 * const opts: WriteKeyPairOptions = { name: "queen", force: true };
 * ```
 */
export interface WriteKeyPairOptions {
  /** File stem: writes `<name>.key` and `<name>.pub`. Letters, digits, `-`, `_`, `.`. */
  readonly name: string;
  /** The pair to write; a fresh one is generated when omitted. */
  readonly pair?: KeyPair;
  /** Label written after the key on both lines. */
  readonly label?: string;
  /** Replace existing key files (atomically, by rename). */
  readonly force?: boolean;
}

/**
 * What {@link writeKeyPair} wrote.
 *
 * @example
 * ```ts
 * const { privatePath, publicPath, id } = await writeKeyPair(dir, { name: "queen" });
 * ```
 */
export interface WrittenKeyPair extends KeyPair {
  readonly privatePath: string;
  readonly publicPath: string;
  /** {@link keyId} of the public key. */
  readonly id: string;
}

/**
 * Writes `DIR/<name>.key` (mode 0600) and `DIR/<name>.pub` (mode 0644),
 * creating DIR with mode 0700 if needed. The private file is created with
 * its final mode, so it is never readable by others, even briefly. Refuses
 * with BusyError when either file exists, unless `force`.
 *
 * @example
 * ```ts
 * const { publicPath, id } = await writeKeyPair(".cohesix/keys", { name: "queen" });
 * ```
 */
export async function writeKeyPair(dir: string, options: WriteKeyPairOptions): Promise<WrittenKeyPair> {
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/.test(options.name)) {
    throw new InvalidError(`key name ${JSON.stringify(options.name)}: use letters, digits, '.', '-', '_'`);
  }
  const pair = options.pair ?? (await generateKeyPair());
  const fileOptions = options.label === undefined ? {} : { label: options.label };
  const privateText = formatPrivateKey(pair.privateKey, fileOptions);
  const publicText = formatPublicKey(pair.publicKey, fileOptions);
  const privatePath = join(dir, `${options.name}.key`);
  const publicPath = join(dir, `${options.name}.pub`);

  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (options.force === true) {
    await replaceFile(privatePath, privateText, 0o600);
    await replaceFile(publicPath, publicText, 0o644);
  } else {
    for (const path of [privatePath, publicPath]) {
      if (await exists(path)) {
        throw new BusyError(`${path} exists: refusing to overwrite a key; pass --force to replace it`);
      }
    }
    await createFile(privatePath, privateText, 0o600);
    try {
      await createFile(publicPath, publicText, 0o644);
    } catch (err) {
      await rm(privatePath, { force: true });
      throw err;
    }
  }
  await syncDir(dir);
  return { ...pair, privatePath, publicPath, id: keyId(pair.publicKey) };
}

/**
 * Reads a private key file. Throws NotFoundError (telling you to run
 * `cohesix keygen`), InvalidError for a wrong format, and PermissionError
 * when group or other may read the file (telling you to `chmod 600`).
 *
 * @example
 * ```ts
 * const seed = await readPrivateKey(".cohesix/keys/queen.key");
 * ```
 */
export async function readPrivateKey(path: string): Promise<Uint8Array> {
  const what = describe(path);
  const info = await statKey(path, what);
  if (process.platform !== "win32" && (info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(4, "0");
    throw new PermissionError(`${what} ${path} is readable by group or other (mode ${mode}): run \`chmod 600 ${path}\``);
  }
  return parsePrivateKey(await readKeyText(path, what), { source: `${what} ${path}` }).key;
}

/**
 * Reads a public key file. Throws NotFoundError (telling you to run
 * `cohesix keygen`) or InvalidError for a wrong format.
 *
 * @example
 * ```ts
 * const queenPub = await readPublicKey("/etc/cohesix/queen.pub");
 * ```
 */
export async function readPublicKey(path: string): Promise<Uint8Array> {
  const what = describe(path);
  await statKey(path, what);
  return parsePublicKey(await readKeyText(path, what), { source: `${what} ${path}` }).key;
}

// ---------------------------------------------------------------------------

function checkLength(bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    throw new InvalidError(`${what} must be ${length} bytes, got ${bytes instanceof Uint8Array ? bytes.length : typeof bytes}`);
  }
}

function formatLine(tag: string, key: Uint8Array, label: string | undefined): string {
  if (label !== undefined && !LABEL.test(label)) {
    throw new InvalidError(`key label ${JSON.stringify(label)}: printable ASCII on one line, no leading or trailing space`);
  }
  const encoded = Buffer.from(key).toString("base64url");
  return `${tag} ${encoded}${label === undefined ? "" : ` ${label}`}\n`;
}

function parseLine(text: string, kind: "private" | "public", source: string): ParsedKey {
  const wanted = kind === "private" ? PRIVATE_TAG : PUBLIC_TAG;
  const other = kind === "private" ? PUBLIC_TAG : PRIVATE_TAG;
  const expected = `expected one line \`${wanted} <base64url>\``;
  const body = text.endsWith("\r\n") ? text.slice(0, -2) : text.endsWith("\n") ? text.slice(0, -1) : text;
  if (body.includes("\n") || body.includes("\r")) {
    throw new InvalidError(`${source}: more than one line: ${expected}`);
  }
  const space = body.indexOf(" ");
  const tag = space < 0 ? body : body.slice(0, space);
  if (tag === other) {
    throw new InvalidError(`${source}: this is a ${kind === "private" ? "public" : "private"} key, expected a ${kind} key`);
  }
  if (tag !== wanted) throw new InvalidError(`${source}: not a Cohesix ${kind} key file: ${expected}`);
  const rest = space < 0 ? "" : body.slice(space + 1);
  const gap = rest.indexOf(" ");
  const encoded = gap < 0 ? rest : rest.slice(0, gap);
  const label = gap < 0 ? undefined : rest.slice(gap + 1);
  const key = decodeBase64url(encoded);
  if (key === undefined || key.length !== KEY_BYTES) {
    throw new InvalidError(`${source}: key is not ${KEY_BYTES} bytes of base64url: ${expected}`);
  }
  if (label !== undefined && !LABEL.test(label)) throw new InvalidError(`${source}: label is not printable ASCII`);
  return label === undefined ? { key } : { key, label };
}

/**
 * Strict base64url (no padding, canonical): undefined for anything else, so
 * one byte string has exactly one text form. Shared with ticket.ts; not part
 * of the folder's entry.
 *
 * @example
 * ```ts
 * decodeBase64url("AQID"); // Uint8Array [1, 2, 3]
 * decodeBase64url("AQID="); // undefined
 * ```
 */
export function decodeBase64url(text: string): Uint8Array | undefined {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, "base64url");
  if (bytes.toString("base64url") !== text) return undefined;
  return new Uint8Array(bytes);
}

/** "queen key" for /x/queen.key, "boot key" for /y/boot.pub. */
function describe(path: string): string {
  const stem = basename(path).replace(/\.(key|pub)$/, "");
  return `${stem} key`;
}

function keygenHint(path: string): string {
  // The release pair (signs disk images) is made by `keygen --release`.
  const release = basename(path).replace(/\.(key|pub)$/, "") === "release" ? " --release" : "";
  return `run \`cohesix keygen${release} --out ${dirname(path)}\``;
}

async function statKey(path: string, what: string) {
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new InvalidError(`${what} ${path}: not a regular file`);
    return info;
  } catch (err) {
    if (isCode(err, "ENOENT") || isCode(err, "ENOTDIR")) throw new NotFoundError(`${what} ${path}: ${keygenHint(path)}`);
    if (isCode(err, "EACCES")) throw new PermissionError(`${what} ${path}: cannot read it as this user`);
    throw err;
  }
}

async function readKeyText(path: string, what: string): Promise<string> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    if (isCode(err, "ENOENT")) throw new NotFoundError(`${what} ${path}: ${keygenHint(path)}`);
    if (isCode(err, "EACCES")) throw new PermissionError(`${what} ${path}: cannot read it as this user`);
    throw err;
  }
  if (data.length > 1024) throw new InvalidError(`${what} ${path}: too long for a key file (${data.length} bytes)`);
  return data.toString("utf8");
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if (isCode(err, "ENOENT")) return false;
    throw err;
  }
}

/** Exclusive create with the final mode from the first syscall, then fsync. */
async function createFile(path: string, text: string, mode: number): Promise<void> {
  let handle;
  try {
    handle = await open(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
  } catch (err) {
    if (isCode(err, "EEXIST")) throw new BusyError(`${path} exists: refusing to overwrite a key; pass --force to replace it`);
    throw err;
  }
  try {
    // umask may have narrowed the mode; set it exactly (never wider than asked).
    await handle.chmod(mode);
    await handle.writeFile(text, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Write a sibling temp file with the final mode, then rename over `path`. */
async function replaceFile(path: string, text: string, mode: number): Promise<void> {
  const temp = `${path}.tmp-${randomBytes(6).toString("hex")}`;
  await createFile(temp, text, mode);
  try {
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

async function syncDir(dir: string): Promise<void> {
  if (process.platform === "win32") return;
  const handle = await open(dir, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } catch {
    // Some file systems refuse fsync on directories; the files are synced.
  } finally {
    await handle.close();
  }
}

function isCode(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === code;
}
