/**
 * A transfer into `/update/data` survives kill -9 of `cohesix serve`: the
 * restarted appliance answers `begin` with the verified offset it synced
 * before the kill, the rest of the bundle completes the transfer, and the
 * commit writes the inactive slot. Each life is killed with a write in
 * flight.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import type { Fid } from "../../nine-door/index.ts";
import { readPrivateKey } from "../../root-task/index.ts";
import { readBootStateFiles } from "../../update/index.ts";
import { digestTree, makeBootDir, makeBundle, releaseKeys } from "../update/ab-fixture.ts";
import { attachQueen } from "../crash.ts";
import { signalPid, stopServed } from "./appliance-helpers.ts";
import { cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

let scratch: Scratch;
let served: Served | undefined;

beforeAll(async () => {
  scratch = await makeScratch();
});

afterAll(async () => {
  await stopServed(served);
  await scratch?.remove();
});

test("kill -9 of serve mid-transfer: the restart resumes at the verified offset and the transfer completes", { timeout: 120_000 }, async () => {
  const keys = await releaseKeys(join(scratch.dir, "release"));
  const bootDir = await makeBootDir(join(scratch.dir, "boot"), { key: keys.privateKey });
  const bundle = await makeBundle(join(scratch.dir, "u.bundle"), { key: keys.privateKey, kernelBytes: 300_000, initrdBytes: 200_000, chunkSize: 32_768 });
  const slotA = await digestTree(join(bootDir, "a"));
  const queenKey = await readPrivateKey(scratch.queenKey);
  const args = ["--boot-dir", bootDir, "--release-pub", keys.publicPath];
  const begin = JSON.stringify({ begin: { size: bundle.bytes.length, sha256: bundle.sha256 } });
  /** A queen session with /update/ctl open on its own fid. */
  const updateCtl = async (addr: string) => {
    const { client, root } = await attachQueen(addr, queenKey);
    const ctl = await root.walk("update/ctl");
    await ctl.open("rw");
    return { client, root, ctl };
  };
  const ask = async (ctl: Fid, command: string): Promise<string> => {
    await ctl.write(command);
    return (await ctl.readAll(0)).toString("utf8").trim();
  };

  // Every acknowledged write reached disk with its whole chunks synced: the
  // verified offset after a kill is at most one chunk behind the last one.
  let atLeast = 0;
  const offsets: number[] = [];
  for (const stopAt of [150_000, 320_000, 450_000]) {
    served = await serve(scratch, args);
    const { client, root, ctl } = await updateCtl(served.addr);
    const reply = await ask(ctl, begin);
    expect(reply).toMatch(/^ok offset=\d+$/);
    const offset = Number(reply.replace("ok offset=", ""));
    expect(offset).toBeGreaterThanOrEqual(atLeast);
    offsets.push(offset);
    const data = await root.walk("update/data");
    await data.open("w");
    let at = offset;
    while (at < stopAt) at += await data.write(bundle.bytes.subarray(at, Math.min(stopAt, at + 6000)), at);
    const inFlight = data.write(bundle.bytes.subarray(at, at + 6000), at).catch(() => 0);
    signalPid(served.pid, "SIGKILL");
    await served.child;
    await inFlight;
    client.close();
    atLeast = stopAt - 32_768;
  }
  expect(offsets.slice(1).every((o) => o > 0)).toBe(true);

  served = await serve(scratch, args);
  const { root, ctl } = await updateCtl(served.addr);
  const offset = Number((await ask(ctl, begin)).replace("ok offset=", ""));
  expect(offset).toBeGreaterThanOrEqual(atLeast);
  const data = await root.walk("update/data");
  await data.open("w");
  for (let at = offset; at < bundle.bytes.length; ) at += await data.write(bundle.bytes.subarray(at, at + 6000), at);
  expect(await ask(ctl, '{"commit":{"tries":2}}')).toBe("ok slot=b version=1.1.0 tries=2");
  expect(await readFile(join(bootDir, "b", "Image"))).toEqual(bundle.kernel);
  expect(await readFile(join(bootDir, "b", "initrd.gz"))).toEqual(bundle.initrd);
  expect((await readBootStateFiles(bootDir)).state).toMatchObject({ active: "a", try: "b", tries: 2, slots: { a: "good", b: "trying" } });
  expect(await digestTree(join(bootDir, "a"))).toBe(slotA);
});

test("serve's update options are checked before anything starts: usage errors exit 2", async () => {
  const base = ["serve", "--board", "host", "--listen", "127.0.0.1:0", "--state", join(scratch.dir, "state-usage"), "--queen-pub", scratch.queenPub];
  const cases: [string[], RegExp][] = [
    [["--boot-dir", scratch.dir], /--boot-dir needs --release-pub FILE/],
    [["--release-pub", scratch.queenPub], /--release-pub and --limit update\.\* go with --boot-dir DIR/],
    [["--boot-dir", scratch.dir, "--release-pub", scratch.queenPub, "--limit", "update.max_bundle_bytes=5"], /--limit update\.max_bundle_bytes must be 1024\.\./],
    [["--boot-dir", scratch.dir, "--release-pub", scratch.queenPub, "--limit", "update.colour=5"], /expected update\.NAME=N with NAME one of max_bundle_bytes, reserve_bytes, max_chunk_bytes, default_tries/],
  ];
  for (const [extra, message] of cases) {
    const r = await cohesix([...base, ...extra], { env: scratch.env });
    expect(r.exitCode, extra.join(" ")).toBe(2);
    expect(r.stderr).toMatch(message);
  }
  // A folder that is not an A/B boot partition: one line that says so, exit 1.
  const r = await cohesix([...base, "--boot-dir", join(scratch.dir, "state-usage"), "--release-pub", scratch.queenPub], { env: scratch.env });
  expect(r.exitCode).toBe(1);
  expect(r.stderr).toMatch(/invalid: --boot-dir .* holds no whole boot state .*: make one with cohesix image --ab/);
});
