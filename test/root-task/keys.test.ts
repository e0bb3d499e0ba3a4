import { mkdtemp, readFile, rm, stat, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { BusyError, InvalidError, NotFoundError, PermissionError } from "../../nine-door/index.ts";
import {
  formatPrivateKey,
  formatPublicKey,
  generateKeyPair,
  keyId,
  parsePrivateKey,
  parsePublicKey,
  publicKeyOf,
  readPrivateKey,
  readPublicKey,
  sign,
  verifySignature,
  writeKeyPair,
} from "../../root-task/index.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-keys-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("generateKeyPair", () => {
  test("makes a 32-byte seed and its 32-byte public key", async () => {
    const pair = await generateKeyPair();
    expect(pair.privateKey.length).toBe(32);
    expect(pair.publicKey.length).toBe(32);
    expect(publicKeyOf(pair.privateKey)).toEqual(pair.publicKey);
  });

  test("signs synchronously and verifies only with the right key", async () => {
    const a = await generateKeyPair();
    const b = await generateKeyPair();
    const msg = new TextEncoder().encode("hello");
    const sig = sign(msg, a.privateKey);
    expect(sig.length).toBe(64);
    expect(verifySignature(sig, msg, a.publicKey)).toBe(true);
    expect(verifySignature(sig, msg, b.publicKey)).toBe(false);
    expect(verifySignature(sig.subarray(1), msg, a.publicKey)).toBe(false);
  });

  test("matches RFC 8032's first Ed25519 test vector (public key and signature)", () => {
    const hex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, "hex"));
    const seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    const pub = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    const sig = hex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    expect(publicKeyOf(seed)).toEqual(pub);
    expect(sign(new Uint8Array(0), seed)).toEqual(sig);
    expect(verifySignature(sig, new Uint8Array(0), pub)).toBe(true);
  });

  test("verifySignature() refuses the malleable S + L and a non-canonical public key (RFC 8032 strict)", async () => {
    const pair = await generateKeyPair();
    const msg = new TextEncoder().encode("ticket");
    const sig = sign(msg, pair.privateKey);
    // S + L: the same signature with S outside [0, L).
    const L = (1n << 252n) + 27742317777372353535851937790883648493n;
    let s = 0n;
    for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(sig[32 + i]!);
    s += L;
    const malleable = new Uint8Array(sig);
    for (let i = 0; i < 32; i++) malleable[32 + i] = Number((s >> BigInt(8 * i)) & 0xffn);
    expect(verifySignature(malleable, msg, pair.publicKey)).toBe(false);
    // y = p + 1 encodes the same point as y = 1 (the identity) non-canonically.
    const nonCanonical = new Uint8Array(32).fill(0xff);
    nonCanonical[0] = 0xee;
    nonCanonical[31] = 0x7f;
    expect(verifySignature(sig, msg, nonCanonical)).toBe(false);
  });

  test("keyId() is a short stable hex fingerprint", async () => {
    const { publicKey } = await generateKeyPair();
    expect(keyId(publicKey)).toMatch(/^[0-9a-f]{16}$/);
    expect(keyId(publicKey)).toBe(keyId(new Uint8Array(publicKey)));
  });
});

describe("key file text", () => {
  test("is one line with the tag, base64url and an optional label", async () => {
    const pair = await generateKeyPair();
    const text = formatPrivateKey(pair.privateKey, { label: "queen@lab" });
    expect(text).toMatch(/^cohesix-ed25519-private [A-Za-z0-9_-]{43} queen@lab\n$/);
    expect(parsePrivateKey(text)).toEqual({ key: pair.privateKey, label: "queen@lab" });
    expect(formatPublicKey(pair.publicKey)).toMatch(/^cohesix-ed25519-public [A-Za-z0-9_-]{43}\n$/);
    expect(parsePublicKey(formatPublicKey(pair.publicKey)).key).toEqual(pair.publicKey);
  });

  test("parse refuses a public key where a private one is expected, and garbage", async () => {
    const pair = await generateKeyPair();
    expect(() => parsePrivateKey(formatPublicKey(pair.publicKey))).toThrow(/this is a public key, expected a private key/);
    expect(() => parsePublicKey("ssh-ed25519 AAAA")).toThrow(InvalidError);
    expect(() => parsePublicKey("cohesix-ed25519-public AAAA\n")).toThrow(/not 32 bytes/);
    expect(() => parsePublicKey("cohesix-ed25519-public a\nb\n")).toThrow(/more than one line/);
  });
});

describe("writeKeyPair / readPrivateKey / readPublicKey", () => {
  test("round-trips a pair through DIR/queen.key and DIR/queen.pub", async () => {
    const out = join(dir, "keys");
    const written = await writeKeyPair(out, { name: "queen", label: "queen" });
    expect(written.privatePath).toBe(join(out, "queen.key"));
    expect(written.publicPath).toBe(join(out, "queen.pub"));
    expect(written.id).toBe(keyId(written.publicKey));
    expect(await readPrivateKey(written.privatePath)).toEqual(written.privateKey);
    expect(await readPublicKey(written.publicPath)).toEqual(written.publicKey);
    expect(await readFile(written.privatePath, "utf8")).toMatch(/^cohesix-ed25519-private \S+ queen\n$/);
  });

  test("creates the private key 0600, the public key 0644 and the directory 0700", async () => {
    const out = join(dir, "fresh", "keys");
    const written = await writeKeyPair(out, { name: "queen" });
    expect((await stat(written.privatePath)).mode & 0o777).toBe(0o600);
    expect((await stat(written.publicPath)).mode & 0o777).toBe(0o644);
    expect((await stat(out)).mode & 0o777).toBe(0o700);
  });

  test("keeps 0600 and 0644 even under a permissive umask", async () => {
    let previous: number;
    try {
      previous = process.umask(0);
    } catch {
      return; // umask cannot be changed in a worker thread
    }
    try {
      const written = await writeKeyPair(dir, { name: "queen" });
      expect((await stat(written.privatePath)).mode & 0o777).toBe(0o600);
      expect((await stat(written.publicPath)).mode & 0o777).toBe(0o644);
    } finally {
      process.umask(previous);
    }
  });

  test("writes a given pair", async () => {
    const pair = await generateKeyPair();
    const written = await writeKeyPair(dir, { name: "boot", pair });
    expect(await readPublicKey(written.publicPath)).toEqual(pair.publicKey);
  });

  test("refuses to overwrite existing keys unless force", async () => {
    const first = await writeKeyPair(dir, { name: "queen" });
    await expect(writeKeyPair(dir, { name: "queen" })).rejects.toThrow(BusyError);
    await expect(writeKeyPair(dir, { name: "queen" })).rejects.toThrow(/refusing to overwrite.*--force/);
    expect(await readPrivateKey(first.privatePath)).toEqual(first.privateKey);

    const second = await writeKeyPair(dir, { name: "queen", force: true });
    expect(second.publicKey).not.toEqual(first.publicKey);
    expect(await readPrivateKey(second.privatePath)).toEqual(second.privateKey);
    expect((await stat(second.privatePath)).mode & 0o777).toBe(0o600);
  });

  test("refuses when only the public half exists, writing nothing", async () => {
    await writeFile(join(dir, "queen.pub"), "x\n");
    await expect(writeKeyPair(dir, { name: "queen" })).rejects.toThrow(BusyError);
    await expect(stat(join(dir, "queen.key"))).rejects.toThrow();
  });

  test("refuses an unsafe key name", async () => {
    await expect(writeKeyPair(dir, { name: "../queen" })).rejects.toThrow(InvalidError);
  });

  test("a missing key says to run cohesix keygen", async () => {
    const path = join(dir, "queen.key");
    const err = await readPrivateKey(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toBe(`not found: queen key ${path}: run \`cohesix keygen --out ${dir}\``);
    await expect(readPublicKey(join(dir, "queen.pub"))).rejects.toThrow(/not found: queen key .*cohesix keygen/);
  });

  test("a private key readable by group or other is refused, naming chmod 600", async () => {
    const written = await writeKeyPair(dir, { name: "queen" });
    await chmod(written.privatePath, 0o640);
    const err = await readPrivateKey(written.privatePath).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermissionError);
    expect((err as Error).message).toBe(
      `permission: queen key ${written.privatePath} is readable by group or other (mode 0640): run \`chmod 600 ${written.privatePath}\``,
    );
  });

  test("a file in the wrong format is refused with the expected form", async () => {
    const written = await writeKeyPair(dir, { name: "queen" });
    await expect(readPrivateKey(written.publicPath.replace(/\.pub$/, ".key"))).resolves.toBeDefined();
    const bad = join(dir, "bad.key");
    await writeFile(bad, "-----BEGIN PRIVATE KEY-----\n", { mode: 0o600 });
    await expect(readPrivateKey(bad)).rejects.toThrow(/invalid: bad key .*bad\.key: not a Cohesix private key file: expected one line `cohesix-ed25519-private <base64url>`/);
    const swapped = join(dir, "swapped.key");
    await writeFile(swapped, await readFile(written.publicPath), { mode: 0o600 });
    await expect(readPrivateKey(swapped)).rejects.toThrow(/this is a public key/);
  });
});
