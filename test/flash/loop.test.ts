/**
 * A loop device on this machine's real sysfs (root only; skipped when
 * losetup cannot attach one): it is listed, reports removable=0 and is
 * refused, and its backing file keeps every byte. The loop device is
 * detached by name (`losetup -d /dev/loopN`) afterwards.
 */
import { execa } from "execa";
import { mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RefusedError, assessDisks, flashImage, listDisks, systemView } from "../../flash/index.ts";
import { makeSignedImage, type SignedImage } from "./signed-image.ts";

let dir = "";
let loop = "";
let backing = "";
let img: SignedImage;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-loop-"));
  backing = join(dir, "disk.bin");
  const fh = await open(backing, "w");
  await fh.write(Buffer.alloc(4096, 0x5a), 0, 4096, 0);
  await fh.truncate(256 << 20); // larger than the image, so only the removable rule refuses it
  await fh.close();
  if (process.getuid?.() === 0) {
    const r = await execa("losetup", ["--find", "--show", backing], { reject: false });
    if (r.exitCode === 0 && r.stdout.startsWith("/dev/loop")) loop = r.stdout.trim();
  }
  if (loop) img = await makeSignedImage(dir);
}, 60_000);

afterAll(async () => {
  if (loop) await execa("losetup", ["-d", loop], { reject: false });
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("a loop device on the real system", () => {
  it("is listed as not removable and refused; its backing file is untouched", async (ctx) => {
    if (!loop) ctx.skip();
    const name = basename(loop);
    const assessed = assessDisks(await listDisks(systemView()), { imageBytes: 1 << 20 });
    const mine = assessed.find((a) => a.disk.name === name);
    expect(mine?.disk).toMatchObject({ path: loop, removable: false, sizeBytes: 256 << 20 });
    expect(mine?.refusals.map((r) => r.code)).toEqual(["not-removable"]);

    const err = await flashImage(img.image, { pubKeyFile: img.pub, device: loop, yes: true, log: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RefusedError);
    expect((err as Error).message).toBe(`permission: refusing ${loop}: not removable (an internal disk)`);
    const head = (await readFile(backing)).subarray(0, 8192);
    expect(head.subarray(0, 4096).every((b) => b === 0x5a)).toBe(true);
    expect(head.subarray(4096).every((b) => b === 0)).toBe(true);
  });
});
