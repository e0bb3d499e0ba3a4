/**
 * The `/update/` service on the host board, without 9P: a transfer into
 * the inactive slot, resume, recovery after a crash, every refusal leaving
 * the boot folder byte-identical, and the state machine's commands.
 */
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Caller } from "../../nine-door/index.ts";
import { initialBootState, readBootStateFiles, slotFits, UpdateService, writeBootStateFiles, type UpdateServiceOptions } from "../../update/index.ts";
import { digestTree, makeBootDir, makeBundle, releaseKeys, type ReleaseKeys } from "./ab-fixture.ts";

const queen: Caller = { role: "queen", subject: "queen" };
let dir: string;
let keys: ReleaseKeys;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-update-"));
  keys = await releaseKeys(join(dir, "keys"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A fresh boot folder, state folder and service. */
async function setup(o: Partial<UpdateServiceOptions> & { version?: string } = {}) {
  const base = join(dir, `case-${++n}`);
  const bootDir = await makeBootDir(join(base, "boot"), { key: keys.privateKey, version: o.version ?? "1.0.0" });
  const stateDir = join(base, "state");
  const audit: string[] = [];
  const options: UpdateServiceOptions = { bootDir, stateDir, runningSlot: "a", board: "host", releasePub: keys.publicKey, runningVersion: o.version ?? "1.0.0", audit: (l) => audit.push(l), ...o };
  const service = await UpdateService.open(options);
  return { base, bootDir, stateDir, service, audit, options };
}

/** Sends `bytes` from `from` in pieces of `piece` bytes, as a 9P client would. */
async function send(service: UpdateService, bytes: Uint8Array, from = 0, piece = 8000, to = bytes.length): Promise<void> {
  for (let at = from; at < to; at += piece) await service.write(at, bytes.subarray(at, Math.min(to, at + piece)), queen);
}

function statusOf(text: string): Record<string, string> {
  return Object.fromEntries(text.trim().split("\n").flatMap((l) => l.split(" ")).map((kv) => kv.split("=") as [string, string]));
}

describe("a transfer into the inactive slot", () => {
  test("a whole transfer and commit writes slot b and sets it trying; slot a is untouched", async () => {
    const { bootDir, service, base, audit } = await setup();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, version: "1.1.0" });
    const slotA = await Promise.all(["Image", "initrd.gz", "manifest.json"].map((f) => readFile(join(bootDir, "a", f))));
    expect(await service.command(JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } }), queen)).toBe("ok offset=0");
    await send(service, bundle.bytes);
    expect(statusOf(await service.status())).toMatchObject({ transfer: "staged", received: String(bundle.bytes.length) });
    expect(await service.command('{"commit":{"tries":3,"allowDowngrade":false}}', queen)).toBe("ok slot=b version=1.1.0 tries=3");
    expect(await readFile(join(bootDir, "b", "Image"))).toEqual(bundle.kernel);
    expect(await readFile(join(bootDir, "b", "initrd.gz"))).toEqual(bundle.initrd);
    expect(await readFile(join(bootDir, "b", "manifest.json"))).toEqual(bundle.manifest);
    expect(await Promise.all(["Image", "initrd.gz", "manifest.json"].map((f) => readFile(join(bootDir, "a", f))))).toEqual(slotA);
    const { state } = await readBootStateFiles(bootDir);
    expect(state).toMatchObject({ active: "a", try: "b", tries: 3, slots: { a: "good", b: "trying" } });
    const status = statusOf(await service.status());
    expect(status).toMatchObject({ slot: "a", state: "good", version: "1.0.0", a_state: "good", a_version: "1.0.0", b_state: "trying", b_version: "1.1.0", transfer: "idle", received: "0", size: "0" });
    expect(audit.some((l) => /update begin from queen/.test(l))).toBe(true);
    expect(audit.some((l) => /update commit from queen: slot b version 1.1.0/.test(l))).toBe(true);
  });

  test("the boot partition is remounted read-write only around the commit's writes", async () => {
    const calls: string[] = [];
    const { service, base } = await setup({ remount: async (mode) => void calls.push(mode) });
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey });
    await service.command(JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } }), queen);
    await send(service, bundle.bytes);
    expect(calls).toEqual([]);
    await service.command('{"commit":{}}', queen);
    expect(calls).toEqual(["rw", "ro"]);
  });

  test("a begin of the same bundle resumes at the verified offset; a new service (a restart) resumes too", async () => {
    const { service, base, options } = await setup();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, chunkSize: 16_384 });
    const begin = JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } });
    await service.command(begin, queen);
    // 60,000 bytes in: a chunk in progress is not verified.
    await send(service, bundle.bytes, 0, 6000, 60_000);
    const first = Number((await service.command(begin, queen)).replace("ok offset=", ""));
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(60_000);
    await service.close();
    const again = await UpdateService.open(options);
    expect(await again.command(begin, queen)).toBe(`ok offset=${first}`);
    await send(again, bundle.bytes, first);
    expect(await again.command('{"commit":{"tries":2}}', queen)).toBe("ok slot=b version=1.1.0 tries=2");
  });

  test("a torn progress record is rebuilt by hashing the staged chunks again", async () => {
    const { service, base, stateDir, options } = await setup();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, chunkSize: 16_384 });
    const begin = JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } });
    await service.command(begin, queen);
    await send(service, bundle.bytes, 0, 5000, 70_000);
    const verified = Number((await service.command(begin, queen)).replace("ok offset=", ""));
    await service.close();
    const progress = join(stateDir, "update", "progress.json");
    await writeFile(progress, (await readFile(progress)).subarray(0, 10));
    const again = await UpdateService.open(options);
    expect(await again.command(begin, queen)).toBe(`ok offset=${verified}`);
    // A staged file cut inside a chunk (the tail never synced) falls back to the last whole chunk.
    await again.close();
    await rm(progress);
    await truncate(join(stateDir, "update", "staging.bundle"), verified - 100);
    const third = await UpdateService.open(options);
    const back = Number((await third.command(begin, queen)).replace("ok offset=", ""));
    expect(back).toBeLessThan(verified);
    await send(third, bundle.bytes, back);
    expect(await third.command('{"commit":{}}', queen)).toBe("ok slot=b version=1.1.0 tries=3");
  });
});

describe("refusals leave the boot folder byte-identical", () => {
  const cases: [string, (o: { base: string; keys: ReleaseKeys }) => Promise<{ bundle: Awaited<ReturnType<typeof makeBundle>>; mutate?: (b: Buffer) => void; commit?: string }>, RegExp][] = [
    ["a bundle signed by another key", async ({ base }) => ({ bundle: await makeBundle(join(base, "u.bundle"), { key: (await releaseKeys(join(base, "other"), "other")).privateKey }) }), /^permission: bundle signed by key/],
    ["a bundle for another board", async ({ base, keys }) => ({ bundle: await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, board: "aarch64-virt" }) }), /^invalid: bundle built for board aarch64-virt, this appliance is host/],
    ["an older version without allowDowngrade", async ({ base, keys }) => ({ bundle: await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, version: "0.9.0" }) }), /^invalid: bundle version 0.9.0 is older than running 1.0.0; pass --allow-downgrade/],
    [
      "a flipped byte in a chunk",
      async ({ base, keys }) => ({ bundle: await makeBundle(join(base, "u.bundle"), { key: keys.privateKey }), mutate: (b) => void (b[b.length - 30_000]! ^= 1) }),
      /^invalid: chunk \d+ .* does not match the bundle's signed hash/,
    ],
  ];
  for (const [what, make, refusal] of cases) {
    test(`${what} is refused while it streams in, and nothing changes`, async () => {
      const { service, bootDir, base } = await setup();
      const before = await digestTree(bootDir);
      const { bundle, mutate } = await make({ base, keys });
      const bytes = Buffer.from(bundle.bytes);
      mutate?.(bytes);
      await service.command(JSON.stringify({ begin: { size: bytes.length, sha256: bundle.sha256 } }), queen);
      await expect(send(service, bytes)).rejects.toThrow(refusal);
      await expect(service.command('{"commit":{}}', queen)).rejects.toThrow(/^invalid: (nothing staged|the transfer is not complete)/);
      expect(await digestTree(bootDir)).toBe(before);
    });
  }

  test("one write spanning several chunks keeps the good chunks before a bad one and cuts the rest", async () => {
    const { service, base, bootDir } = await setup();
    const before = await digestTree(bootDir);
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, chunkSize: 16_384 });
    const headerEnd = bundle.bytes.length - 110_000 - bundle.manifest.length;
    const bytes = Buffer.from(bundle.bytes);
    bytes[headerEnd + 2 * 16_384 + 5]! ^= 0x80;
    const begin = JSON.stringify({ begin: { size: bytes.length, sha256: bundle.sha256 } });
    await service.command(begin, queen);
    await expect(service.write(0, bytes, queen)).rejects.toThrow(`invalid: chunk 2 (bytes ${headerEnd + 2 * 16_384}–${headerEnd + 3 * 16_384}) does not match the bundle's signed hash: send again from offset ${headerEnd + 2 * 16_384}`);
    expect(await service.command(begin, queen)).toBe(`ok offset=${headerEnd + 2 * 16_384}`);
    expect(await digestTree(bootDir)).toBe(before);
    await send(service, bundle.bytes, headerEnd + 2 * 16_384);
    expect(await service.command('{"commit":{}}', queen)).toBe("ok slot=b version=1.1.0 tries=3");
  });

  test("a preamble that is not a bundle, or declares a header over 64 KiB, drops the transfer at its 20th byte", async () => {
    const { service, bootDir } = await setup();
    const before = await digestTree(bootDir);
    const begin = JSON.stringify({ begin: { size: 1 << 20, sha256: "a".repeat(64) } });
    await service.command(begin, queen);
    await expect(service.write(0, Buffer.alloc(20, 0x41), queen)).rejects.toThrow(/^invalid: not a cohesix bundle/);
    expect(statusOf(await service.status())).toMatchObject({ transfer: "idle" });
    await service.command(begin, queen);
    const huge = Buffer.concat([Buffer.from("COHESIX-BUNDLE1\n", "latin1"), Buffer.from([0, 0x10, 0, 0])]);
    await service.write(0, huge.subarray(0, 10), queen);
    await expect(service.write(10, huge.subarray(10), queen)).rejects.toThrow(/^too big: bundle header of 1048576 bytes is over the 65536-byte limit/);
    expect(statusOf(await service.status())).toMatchObject({ transfer: "idle" });
    expect(await digestTree(bootDir)).toBe(before);
  });

  test("a write at the wrong offset is refused with the offset expected", async () => {
    const { service, base, bootDir } = await setup();
    const before = await digestTree(bootDir);
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey });
    await service.command(JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } }), queen);
    await service.write(0, bundle.bytes.subarray(0, 100), queen);
    await expect(service.write(500, bundle.bytes.subarray(500, 600), queen)).rejects.toThrow("invalid: expected offset 100, got 500");
    expect(await digestTree(bootDir)).toBe(before);
  });

  test("a bundle over the size limit is refused at begin; bytes past the begun size are refused", async () => {
    const { service, base, bootDir } = await setup({ limits: { maxBundleBytes: 50_000 } });
    const before = await digestTree(bootDir);
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey });
    await expect(service.command(JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } }), queen)).rejects.toThrow(/^too big: bundle of \d+ bytes, limit 50000/);
    await service.command(JSON.stringify({ begin: { size: 40_000, sha256: bundle.sha256 } }), queen);
    await expect(send(service, bundle.bytes, 0, 8000, 48_000)).rejects.toThrow(/^(too big|invalid): /);
    expect(await digestTree(bootDir)).toBe(before);
  });

  test("a bundle that does not fit the state disk is refused at begin", async () => {
    const { service } = await setup({ limits: { reserveBytes: 2 ** 50, maxBundleBytes: 2 ** 40 } });
    await expect(service.command(JSON.stringify({ begin: { size: 1 << 20, sha256: "0".repeat(64) } }), queen)).rejects.toThrow(/^too big: bundle of 1048576 bytes does not fit the state disk/);
  });

  test("a whole-file sha256 other than begin's is refused at commit", async () => {
    const { service, base, bootDir } = await setup();
    const before = await digestTree(bootDir);
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey });
    await service.command(JSON.stringify({ begin: { size: bundle.bytes.length, sha256: "f".repeat(64) } }), queen);
    await send(service, bundle.bytes);
    await expect(service.command('{"commit":{}}', queen)).rejects.toThrow(/^invalid: staged bundle's sha256 [0-9a-f]{64} is not the f{64} begin named/);
    expect(await digestTree(bootDir)).toBe(before);
  });

  test("an older version passes with allowDowngrade at begin and commit, and not with it at begin only", async () => {
    const { service, base } = await setup();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, version: "0.9.0" });
    await service.command(JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256, allowDowngrade: true } }), queen);
    await send(service, bundle.bytes);
    await expect(service.command('{"commit":{}}', queen)).rejects.toThrow(/older than running 1.0.0; pass --allow-downgrade/);
    expect(await service.command('{"commit":{"allowDowngrade":true}}', queen)).toBe("ok slot=b version=0.9.0 tries=3");
  });
});

describe("failures while the slot is written", () => {
  test("a commit that fails while writing leaves slot b empty, never trying, and slot a and its state confirmed", async () => {
    const calls: string[] = [];
    const { service, base, bootDir, audit } = await setup({ remount: async (mode) => void calls.push(mode) });
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey });
    await service.command(JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } }), queen);
    await send(service, bundle.bytes);
    const slotA = await digestTree(join(bootDir, "a"));
    // A directory where the kernel goes: the write fails after the slot was marked empty.
    await rm(join(bootDir, "b", "Image"));
    await mkdir(join(bootDir, "b", "Image", "x"), { recursive: true });
    await expect(service.command('{"commit":{}}', queen)).rejects.toThrow();
    expect((await readBootStateFiles(bootDir)).state).toMatchObject({ active: "a", try: null, tries: 0, slots: { a: "good", b: "empty" } });
    expect(await digestTree(join(bootDir, "a"))).toBe(slotA);
    expect(calls).toEqual(["rw", "ro"]);
    expect(audit.some((l) => /failed while writing: .*slot b is left empty, slot a untouched/.test(l))).toBe(true);
    // The staged bundle stays: once the fault is cleared the same commit succeeds.
    await rm(join(bootDir, "b", "Image"), { recursive: true });
    expect(await service.command('{"commit":{}}', queen)).toBe("ok slot=b version=1.1.0 tries=3");
    await expect(service.command('{"rollback":true}', queen)).resolves.toBe("ok next=a");
  });

  test("a slot's room is its old files and the free space, counted in whole blocks (FAT clusters)", () => {
    expect(slotFits({ payloads: [5000, 3000], oldFiles: [4096], freeBlocks: 1, blockSize: 4096 })).toEqual({ fits: false, needed: 12_288, room: 8192 });
    expect(slotFits({ payloads: [5000, 3000], oldFiles: [4097], freeBlocks: 1, blockSize: 4096 })).toEqual({ fits: true, needed: 12_288, room: 12_288 });
    expect(slotFits({ payloads: [1, 1, 1], oldFiles: [], freeBlocks: 2, blockSize: 32_768 })).toMatchObject({ fits: false });
  });

  test("a staged transfer whose header no longer passes at start (another release key) is dropped", async () => {
    const { service, base, options } = await setup();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey });
    const begin = JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } });
    await service.command(begin, queen);
    await send(service, bundle.bytes, 0, 8000, 60_000);
    await service.close();
    const rekeyed = await UpdateService.open({ ...options, releasePub: (await releaseKeys(join(base, "new"), "new")).publicKey });
    expect(statusOf(await rekeyed.status())).toMatchObject({ transfer: "idle", received: "0" });
    expect(await rekeyed.command(begin, queen)).toBe("ok offset=0");
  });
});

describe("the slot state machine", () => {
  test("begin and commit are refused while a slot is trying; rollback cancels the try", async () => {
    const { service, base, bootDir, audit } = await setup();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey });
    const begin = JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } });
    await service.command(begin, queen);
    await send(service, bundle.bytes);
    await service.command('{"commit":{"tries":2}}', queen);
    const before = await digestTree(bootDir);
    await expect(service.command(begin, queen)).rejects.toThrow("busy: slot b is trying (2 tries left); wait until it is confirmed or rolled back, or run cohesix update --rollback");
    expect(await digestTree(bootDir)).toBe(before);
    expect(await service.command('{"rollback":true}', queen)).toBe("ok next=a");
    expect(audit).toEqual(expect.arrayContaining([
      expect.stringMatching(/^update from queen refused: busy: slot b is trying/),
      "update rollback from queen: try of slot b cancelled, next boot runs slot a",
    ]));
    const { state } = await readBootStateFiles(bootDir);
    expect(state).toMatchObject({ active: "a", try: null, tries: 0, slots: { a: "good", b: "rolled_back" } });
    expect(statusOf(await service.status())).toMatchObject({ b_state: "rolled_back", rolled_back: "b", reason: "rolled_back_by_queen" });
    expect(await service.command(begin, queen)).toBe("ok offset=0");
  });

  test("a slot rolled back by U-Boot shows the reason the root task knows, else tries_ran_out", async () => {
    const rolled = { ...initialBootState({ active: "a", other: "rolled_back" }), seq: 7 };
    const { service, bootDir } = await setup();
    await writeBootStateFiles(bootDir, rolled);
    expect(statusOf(await service.status())).toMatchObject({ rolled_back: "b", reason: "tries_ran_out" });
    const { service: told, bootDir: toldBoot } = await setup({ rollbackReason: (slot) => (slot === "b" ? "health check failed" : undefined) });
    await writeBootStateFiles(toldBoot, rolled);
    expect(statusOf(await told.status())).toMatchObject({ rolled_back: "b", reason: "health_check_failed" });
  });

  test("rollback to a good other slot makes it the confirmed one; to a slot that is not good it is refused", async () => {
    const { service, bootDir } = await setup();
    expect(await service.command('{"rollback":true}', queen)).toBe("ok next=b");
    expect((await readBootStateFiles(bootDir)).state).toMatchObject({ active: "b", slots: { a: "good", b: "good" } });
    const { service: other, bootDir: otherBoot } = await setup();
    await writeBootStateFiles(otherBoot, { ...initialBootState({ active: "a", other: "rolled_back" }), seq: 9 });
    const before = await digestTree(otherBoot);
    await expect(other.command('{"rollback":true}', queen)).rejects.toThrow("invalid: slot b is rolled_back, not good: there is nothing to roll back to");
    expect(await digestTree(otherBoot)).toBe(before);
  });

  test("a commit never writes the confirmed slot when the appliance runs the other one unconfirmed", async () => {
    const { service, base, bootDir } = await setup({ runningSlot: "b" });
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey });
    await service.command(JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } }), queen);
    await send(service, bundle.bytes);
    const before = await digestTree(bootDir);
    await expect(service.command('{"commit":{}}', queen)).rejects.toThrow(/^invalid: slot a is the confirmed slot and this appliance runs slot b/);
    expect(await digestTree(bootDir)).toBe(before);
  });

  test("reboot is refused on the host board and called on a board that reboots; abort drops the staging", async () => {
    const { service } = await setup();
    await expect(service.command('{"reboot":true}', queen)).rejects.toThrow("invalid: the host board does not reboot");
    let rebooted = false;
    const { service: guest, base } = await setup({ reboot: () => void (rebooted = true) });
    expect(await guest.command('{"reboot":true}', queen)).toBe("ok rebooting");
    await expect.poll(() => rebooted, { timeout: 5000 }).toBe(true);
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey });
    await guest.command(JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } }), queen);
    await send(guest, bundle.bytes, 0, 8000, 50_000);
    expect(await guest.command('{"abort":true}', queen)).toBe("ok aborted");
    expect(statusOf(await guest.status())).toMatchObject({ transfer: "idle", received: "0", size: "0" });
  });

  test("commands are strict JSON: unknown commands and fields are refused", async () => {
    const { service } = await setup();
    for (const bad of ["begin", '{"begin":{"size":10}}', '{"commit":{"tries":10}}', '{"commit":{"force":true}}', '{"rollback":false}', '{"abort":true,"reboot":true}', '{"format":"/"}']) {
      await expect(service.command(bad, queen), bad).rejects.toThrow(/^invalid: /);
    }
  });

  test("data written before begin is refused", async () => {
    const { service } = await setup();
    await expect(service.write(0, Buffer.from("COHESIX-BUNDLE1\n"), queen)).rejects.toThrow(/^invalid: no transfer begun/);
  });
});
