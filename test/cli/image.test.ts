/**
 * The `cohesix keygen --release`, `cohesix image` and `cohesix image
 * verify` command lines: key files and modes, default key locations, usage
 * errors (exit 2), and a refused image (exit 1, `permission:` with what
 * differs). Images here are small ones made by writeDiskImage; the real
 * board image is built in test/flash/uboot.e2e.test.ts.
 */
import { open, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeDiskImage } from "../../flash/index.ts";
import { readPrivateKey } from "../../root-task/index.ts";
import { cohesix, makeScratch, type Scratch } from "./helpers.ts";

let scratch: Scratch;

beforeAll(async () => {
  scratch = await makeScratch();
});
afterAll(async () => {
  await scratch?.remove();
});

describe("cohesix keygen --release", () => {
  it("writes release.key (0600) and release.pub in --out, and by default in the config folder", async () => {
    const out = join(scratch.dir, "release-keys");
    const r = await cohesix(["keygen", "--release", "--out", out], { env: scratch.env });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(join(out, "release.key"));
    expect((await stat(join(out, "release.key"))).mode & 0o777).toBe(0o600);
    expect(await readFile(join(out, "release.pub"), "utf8")).toMatch(/^cohesix-ed25519-public /);
    const d = await cohesix(["keygen", "--release"], { env: scratch.env });
    expect(d.exitCode, d.stderr).toBe(0);
    expect(d.stdout).toContain(join(scratch.env.XDG_CONFIG_HOME!, "cohesix", "release.pub"));
    const again = await cohesix(["keygen", "--release", "--out", out], { env: scratch.env });
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(/release\.key exists: refusing to overwrite a key; pass --force/);
  });
});

describe("cohesix image", () => {
  it("refuses a missing --out and an unknown board as usage or not-found errors", async () => {
    const r = await cohesix(["image", "--board", "aarch64-virt"], { env: scratch.env });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--out is required: the disk image to write/);
    const b = await cohesix(["image", "--board", "rpi9", "--out", join(scratch.dir, "x.img")], { env: scratch.env });
    expect(b.exitCode).toBe(1);
    expect(b.stderr).toMatch(/not found: no board "rpi9"/);
  });

  it("image verify accepts a signed image with the default release key, and refuses a changed byte with exit 1", async () => {
    const key = await readPrivateKey(join(scratch.env.XDG_CONFIG_HOME!, "cohesix", "release.key"));
    const src = join(scratch.dir, "Image");
    await writeFile(src, Buffer.alloc(100_000, 3));
    const img = join(scratch.dir, "small.img");
    await writeDiskImage(img, { board: "test", bootFiles: [{ path: "/Image", src }], releaseKey: key, initramfsDigest: `sha256:${"cd".repeat(32)}`, dataBytes: 8 << 20 });
    const ok = await cohesix(["image", "verify", img], { env: scratch.env, timeoutMs: 60_000 });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^ok .*small\.img: \d+ bytes, sha256 [0-9a-f]{64}, board test, signed by release key [0-9a-f]{16}$/m);
    expect(ok.stdout).toMatch(/^ {2}\/Image 100000 [0-9a-f]{64}$/m);
    const fh = await open(img, "r+");
    await fh.write(Buffer.from([0xff]), 0, 1, 300);
    await fh.close();
    const bad = await cohesix(["image", "verify", img], { env: scratch.env, timeoutMs: 60_000 });
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/^permission: .*small\.img: sha256 [0-9a-f]{64} differs from the signed [0-9a-f]{64}: a byte of the image changed; do not flash it$/m);
    const usage = await cohesix(["image", "verify"], { env: scratch.env });
    expect(usage.exitCode).toBe(2);
    const nokey = await cohesix(["image", "verify", img, "--pub", join(scratch.dir, "nowhere", "release.pub")], { env: scratch.env });
    expect(nokey.exitCode).toBe(1);
    expect(nokey.stderr).toMatch(/not found: release key .*nowhere\/release\.pub: run `cohesix keygen --release --out .*nowhere`/);
  });
});
