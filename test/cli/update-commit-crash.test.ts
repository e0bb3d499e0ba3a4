/**
 * kill -9 of `cohesix serve --boot-dir` at random points of a commit (a
 * 32 MB bundle, so the slot's writes take a while): after every kill the
 * boot state is whole, slot a and its confirmed state are untouched, and
 * slot b is `trying` only with every file of the bundle in place —
 * otherwise it is what it was or `empty`, never tried. The staged bundle
 * survives a cut commit, so the next life commits it again without a new
 * transfer.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import type { Fid } from "../../nine-door/index.ts";
import { readPrivateKey } from "../../root-task/index.ts";
import { initialBootState, readBootStateFiles, writeBootStateFiles } from "../../update/index.ts";
import { digestTree, makeBootDir, makeBundle, releaseKeys } from "../update/ab-fixture.ts";
import { attachQueen, crashSeed, mulberry32 } from "../crash.ts";
import { signalPid, stopServed } from "./appliance-helpers.ts";
import { makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

const KILLS = 8;
// Large files are compared by digest: a deep equality of 24 MB buffers takes minutes.
const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");
const sha256Of = async (path: string): Promise<string> => sha256(await readFile(path));
const SEED = crashSeed();
let scratch: Scratch;
let served: Served | undefined;

beforeAll(async () => {
  scratch = await makeScratch();
});

afterAll(async () => {
  await stopServed(served);
  await scratch?.remove();
});

test(`${KILLS} SIGKILLs during commits never leave slot b tried half-written (seed from COHESIX_CRASH_SEED)`, { timeout: 300_000 }, async () => {
  const rand = mulberry32(SEED);
  const keys = await releaseKeys(join(scratch.dir, "release"));
  const bootDir = await makeBootDir(join(scratch.dir, "boot"), { key: keys.privateKey });
  const bundle = await makeBundle(join(scratch.dir, "u.bundle"), { key: keys.privateKey, kernelBytes: 24 << 20, initrdBytes: 8 << 20, chunkSize: 1 << 20 });
  const slotA = await digestTree(join(bootDir, "a"));
  const slotB = await digestTree(join(bootDir, "b"));
  const queenKey = await readPrivateKey(scratch.queenKey);
  const args = ["--boot-dir", bootDir, "--release-pub", keys.publicPath];
  const begin = JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } });
  const ask = async (ctl: Fid, command: string): Promise<string> => {
    await ctl.write(command);
    return (await ctl.readAll(0)).toString("utf8").trim();
  };
  /** A life: begin (sending what is missing), then the commit; resolves with its reply, or the error the kill caused. */
  const life = async (kill: boolean): Promise<string> => {
    served = await serve(scratch, args);
    const { client, root } = await attachQueen(served.addr, queenKey);
    const ctl = await root.walk("update/ctl");
    await ctl.open("rw");
    const offset = Number((await ask(ctl, begin)).replace("ok offset=", ""));
    if (offset < bundle.bytes.length) {
      const data = await root.walk("update/data");
      await data.open("w");
      for (let at = offset; at < bundle.bytes.length; ) at += await data.write(bundle.bytes.subarray(at, at + (1 << 20)), at);
      await data.clunk();
    }
    const reply = ask(ctl, '{"commit":{"tries":2}}').catch((err: Error) => `killed: ${err.message}`);
    if (kill) {
      await new Promise((resolve) => setTimeout(resolve, Math.floor(rand() * 600)));
      signalPid(served.pid, "SIGKILL");
      await served.child;
      client.close();
    }
    return reply;
  };
  const outcomes = { trying: 0, empty: 0, untouched: 0 };

  for (let i = 0; i < KILLS; i++) {
    await life(true);
    const { state } = await readBootStateFiles(bootDir);
    expect(state, `kill ${i}: a whole copy of the state`).not.toBeNull();
    expect(state).toMatchObject({ active: "a", slots: { a: "good" } });
    expect(await digestTree(join(bootDir, "a")), `kill ${i}: slot a untouched`).toBe(slotA);
    if (state!.slots.b === "trying") {
      outcomes.trying++;
      expect(state).toMatchObject({ try: "b", tries: 2 });
      expect(await sha256Of(join(bootDir, "b", "Image"))).toBe(sha256(bundle.kernel));
      expect(await sha256Of(join(bootDir, "b", "initrd.gz"))).toBe(sha256(bundle.initrd));
      expect(await sha256Of(join(bootDir, "b", "manifest.json"))).toBe(sha256(bundle.manifest));
      // Start the next life from a confirmed a and an empty b.
      await writeBootStateFiles(bootDir, { ...initialBootState({ active: "a", other: "empty" }), seq: state!.seq + 1 });
    } else if (state!.slots.b === "empty") {
      outcomes.empty++;
      expect(state!.try).toBeNull();
    } else {
      outcomes.untouched++;
      expect(state).toMatchObject({ try: null, slots: { b: "good" } });
      expect(await digestTree(join(bootDir, "b")), `kill ${i}: slot b still good, so untouched`).toBe(slotB);
    }
  }

  // The last life commits to the end.
  expect(await life(false)).toBe("ok slot=b version=1.1.0 tries=2");
  expect((await readBootStateFiles(bootDir)).state).toMatchObject({ active: "a", try: "b", tries: 2, slots: { a: "good", b: "trying" } });
  expect(await sha256Of(join(bootDir, "b", "Image"))).toBe(sha256(bundle.kernel));
  expect(outcomes.trying + outcomes.empty + outcomes.untouched).toBe(KILLS);
  console.log(`commit kills: ${JSON.stringify(outcomes)} (seed ${SEED})`);
});
