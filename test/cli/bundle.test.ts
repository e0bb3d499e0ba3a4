/**
 * `cohesix bundle` and `cohesix image verify BUNDLE`: a bundle for the
 * aarch64-virt board built from the cached artefacts (offline) exactly as
 * `cohesix image` builds a slot, checked whole, refused when a byte
 * changed or another key signed it; a project's bundle carries the
 * project's own worker.
 */
import { symlink, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decompress, readCpio, type CpioEntry } from "../../rootfs/index.ts";
import { bundleHeaderLength, parseBundleHeader, payloadRanges, payloadOffset } from "../../update/index.ts";
import { cohesix, makeScratch, ROOT, type Scratch } from "./helpers.ts";

let scratch: Scratch;
let bundle = "";
let dot = "";
const BUILD_MS = 240_000;

/** The initramfs inside a bundle, as cpio entries by path (every archive of the concatenated initramfs). */
async function initramfsOf(file: string): Promise<Map<string, CpioEntry<Uint8Array>>> {
  const bytes = await readFile(file);
  const { header } = parseBundleHeader(bytes.subarray(0, bundleHeaderLength(bytes.subarray(0, 20))));
  const r = payloadRanges(header).find((p) => p.name === "initrd.gz")!;
  const raw = decompress(bytes.subarray(r.start, r.end));
  const entries: CpioEntry<Uint8Array>[] = [];
  for (let at = 0; at >= 0 && at < raw.length; ) {
    entries.push(...readCpio(raw.subarray(at)));
    const trailer = raw.indexOf("TRAILER!!!", at);
    at = trailer < 0 ? -1 : raw.indexOf("070701", trailer);
  }
  return new Map(entries.map((e) => [e.path, e]));
}

beforeAll(async () => {
  scratch = await makeScratch();
  dot = join(scratch.dir, "dot");
  bundle = join(scratch.dir, "cohesix-1.2.0.bundle");
  const r = await cohesix(["bundle", "--board", "aarch64-virt", "--out", bundle, "--version", "1.2.0", "--offline", "--dir", dot], { env: scratch.env, timeoutMs: BUILD_MS });
  expect(r.exitCode, r.stderr).toBe(0);
}, BUILD_MS);
afterAll(async () => {
  await scratch?.remove();
});

describe("cohesix bundle", () => {
  it("writes a bundle of the board's kernel and disk initramfs, signed with the default release key, and prints what it holds", async () => {
    const verified = await cohesix(["image", "verify", bundle, "--board", "aarch64-virt"], { env: scratch.env, timeoutMs: 60_000 });
    expect(verified.exitCode, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/^ok .*cohesix-1\.2\.0\.bundle: bundle for board aarch64-virt, version 1\.2\.0, \d+ bytes, sha256 [0-9a-f]{64}, signed by release key [0-9a-f]{16}$/m);
    expect(verified.stdout).toMatch(/^ {2}Image \d+ [0-9a-f]{64}$/m);
    expect(verified.stdout).toMatch(/^ {2}initrd\.gz \d+ [0-9a-f]{64}$/m);
    const json = await cohesix(["image", "verify", bundle, "--json"], { env: scratch.env, timeoutMs: 60_000 });
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, kind: "bundle", board: "aarch64-virt", version: "1.2.0" });
    // The same slot a disk image carries: the release key for the boot-time check, and the boot partition's modules.
    const entries = await initramfsOf(bundle);
    expect([...entries.keys()]).toContain("etc/cohesix/release.pub");
    expect([...entries.keys()].some((p) => /\/vfat\.ko$/.test(p))).toBe(true);
  });

  it("image verify refuses a bundle with a changed byte, and one signed by another release key, with exit 1", async () => {
    const bytes = await readFile(bundle);
    const changed = join(scratch.dir, "changed.bundle");
    const damaged = Buffer.from(bytes);
    damaged[payloadOffset(parseBundleHeader(bytes.subarray(0, bundleHeaderLength(bytes))).header) + 5_000_000] ^= 0x01;
    await writeFile(changed, damaged);
    const bad = await cohesix(["image", "verify", changed], { env: scratch.env, timeoutMs: 60_000 });
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/^invalid: .*changed\.bundle: bundle chunk 4 \(bytes \d+–\d+\) differs from its sha256 in the header: the file is damaged$/);
    await cohesix(["keygen", "--release", "--out", join(scratch.dir, "other")], { env: scratch.env });
    const other = await cohesix(["image", "verify", bundle, "--pub", join(scratch.dir, "other", "release.pub")], { env: scratch.env, timeoutMs: 60_000 });
    expect(other.exitCode).toBe(1);
    expect(other.stderr).toMatch(/^permission: .*: bundle signed by key [0-9a-f]{16}, this appliance trusts [0-9a-f]{16}$/);
    const board = await cohesix(["image", "verify", bundle, "--board", "rpi4"], { env: scratch.env, timeoutMs: 60_000 });
    expect(board.exitCode).toBe(1);
    expect(board.stderr).toMatch(/^invalid: .*: bundle built for board aarch64-virt, this appliance is rpi4$/);
  });

  it("refuses a malformed --version and a missing --out as usage errors (exit 2)", async () => {
    const v = await cohesix(["bundle", "--out", join(scratch.dir, "x.bundle"), "--version", "1.2-rc1"], { env: scratch.env });
    expect(v.exitCode).toBe(2);
    expect(v.stderr).toMatch(/--version "1\.2-rc1" must be dotted whole numbers such as 1\.2\.0/);
    const o = await cohesix(["bundle", "--version", "1.0.0"], { env: scratch.env });
    expect(o.exitCode).toBe(2);
    expect(o.stderr).toMatch(/--out is required: the bundle file to write/);
  });

  it("builds a project's bundle with the project's own worker, versioned from its package.json", async () => {
    const project = join(scratch.dir, "my-appliance");
    const created = await cohesix(["new", project, "--cohesix", `file:${ROOT}`], { env: scratch.env });
    expect(created.exitCode, created.stderr).toBe(0);
    await mkdir(join(project, "node_modules"));
    await symlink(ROOT, join(project, "node_modules", "cohesix"));
    const out = join(scratch.dir, "my.bundle");
    const r = await cohesix(["bundle", "--project", project, "--out", out, "--offline", "--dir", dot, "--json"], { env: scratch.env, timeoutMs: BUILD_MS });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ bundle: out, board: "aarch64-virt", version: "0.1.0" });
    const entries = await initramfsOf(out);
    const worker = entries.get("opt/cohesix/dist/workers/sensor.mjs") as { data: Uint8Array } | undefined;
    expect(worker, [...entries.keys()].filter((p) => p.includes("workers")).join(" ")).toBeDefined();
    const config = JSON.parse(new TextDecoder().decode((entries.get("etc/cohesix/config.json") as { data: Uint8Array }).data)) as { workers: string[] };
    expect(config.workers).toContain("sensor");
    const verified = await cohesix(["image", "verify", out], { env: scratch.env, timeoutMs: 60_000 });
    expect(verified.exitCode, verified.stderr).toBe(0);
  }, BUILD_MS);
});
