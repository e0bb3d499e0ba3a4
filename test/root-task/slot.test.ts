/**
 * The appliance knows its A/B slot: the boot script's command line words
 * become one record, the running slot's own manifest is checked (not the
 * image-wide one an update outdates), `/proc/boot` shows slot, version,
 * state, tries left and a rollback with its reason, and images without
 * slots show none of it.
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BOOT_MANIFEST_FORMAT,
  NO_VERSION,
  UNRECORDED_FAILURE,
  checkSlotManifest,
  clearTryFailure,
  readTryFailure,
  recordTryFailure,
  signDocument,
  slotBootOf,
  slotLines,
  slotReport,
  writeKeyPair,
} from "../../root-task/index.ts";
import { cmdlineParams } from "../../root-task/guest.ts";
import type { BootState } from "../../update/index.ts";
import { useAppliances } from "./fixture.ts";

let dir = "";
let releaseKey: Uint8Array;
let releasePub = "";
let otherKey: Uint8Array;
const sha = (data: string): string => createHash("sha256").update(data).digest("hex");

/** A boot folder whose slot `slot` holds two files and a manifest listing them under `listedAs` (a slot folder, or none). */
async function slotDir(name: string, options: { slot: "a" | "b"; listedAs?: string; key?: Uint8Array; version?: string; kernel?: string }): Promise<string> {
  const boot = join(dir, name);
  await mkdir(join(boot, options.slot), { recursive: true });
  const files = { Image: options.kernel ?? "kernel bytes", "initrd.gz": "initramfs bytes" };
  for (const [p, text] of Object.entries(files)) await writeFile(join(boot, options.slot, p), text);
  const prefix = options.listedAs === undefined ? `/${options.slot}` : options.listedAs;
  const artefacts = Object.entries({ Image: "kernel bytes", "initrd.gz": "initramfs bytes" }).map(([p, text]) => ({ path: `${prefix}/${p}`, size: text.length, sha256: sha(text) }));
  const doc = signDocument({ format: BOOT_MANIFEST_FORMAT, board: "test", artefacts, ...(options.version ? { version: options.version } : {}) }, options.key ?? releaseKey);
  await writeFile(join(boot, options.slot, "manifest.json"), `${JSON.stringify(doc, null, 2)}\n`);
  return boot;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-slot-"));
  const pair = await writeKeyPair(join(dir, "keys"), { name: "release" });
  releaseKey = pair.privateKey;
  releasePub = pair.publicPath;
  otherKey = (await writeKeyPair(join(dir, "other"), { name: "release" })).privateKey;
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const trying: BootState = { seq: 3, active: "a", try: "b", tries: 2, slots: { a: "good", b: "trying" } };
const rolledBack: BootState = { seq: 6, active: "a", try: null, tries: 0, slots: { a: "good", b: "rolled_back" } };

describe("slotBootOf", () => {
  it("reads the boot script's slot words from the kernel command line into one record", () => {
    const params = cmdlineParams("console=ttyAMA0 cohesix.boot=/dev/vda1 cohesix.slot=b cohesix.slot_boot=try cohesix.tries_left=2");
    expect(slotBootOf(params)).toEqual({ slot: "b", kind: "try", triesLeft: 2 });
    expect(slotBootOf(cmdlineParams("cohesix.slot=a cohesix.slot_boot=rollback cohesix.tries_left=0"))).toEqual({ slot: "a", kind: "rollback", triesLeft: 0 });
  });

  it("gives no record on an image without slots, and reads an unknown kind as normal and a bad count as 0", () => {
    expect(slotBootOf(cmdlineParams("console=ttyAMA0 cohesix.boot=/dev/vda1"))).toBeUndefined();
    expect(slotBootOf({ slot: "c" })).toBeUndefined();
    expect(slotBootOf({ slot: "a", slot_boot: "sideways", tries_left: "12" })).toEqual({ slot: "a", kind: "normal", triesLeft: 0 });
  });
});

describe("slotReport and its /proc/boot lines", () => {
  it("shows a slot being tried with its version and the tries left", () => {
    const report = slotReport({ slot: "b", kind: "try", triesLeft: 1 }, trying, { version: "1.2.0" });
    expect(slotLines(report)).toEqual(["slot=b", "slot_version=1.2.0", "slot_state=trying", "tries_left=1"]);
  });

  it("after a rollback names the rolled-back slot and the reason its try recorded", () => {
    const report = slotReport({ slot: "a", kind: "rollback", triesLeft: 0 }, rolledBack, { version: "1.0.0", failure: { slot: "b", reason: "required worker crash (worker-1) exited: exited with code 1" } });
    expect(slotLines(report)).toEqual(["slot=a", "slot_version=1.0.0", "slot_state=good", "tries_left=0", "rolled_back from=b reason=required worker crash (worker-1) exited: exited with code 1"]);
  });

  it("says the tries ran out without a verdict when no reason was recorded for that slot (a panic, a hang)", () => {
    const report = slotReport({ slot: "a", kind: "rollback", triesLeft: 0 }, rolledBack, { version: "1.0.0", failure: { slot: "a", reason: "an older failure of a" } });
    expect(report.rolledBack).toEqual({ from: "b", reason: UNRECORDED_FAILURE });
  });

  it("ignores a recorded failure of another build in that slot (an older update's), and keeps one of the same build", () => {
    const failure = { slot: "b" as const, manifest: `sha256:${"1".repeat(64)}`, reason: "required worker crash exited" };
    const boot = { slot: "a" as const, kind: "rollback" as const, triesLeft: 0 };
    expect(slotReport(boot, rolledBack, { version: "1.0.0", failure, otherManifest: `sha256:${"2".repeat(64)}` }).rolledBack?.reason).toBe(UNRECORDED_FAILURE);
    expect(slotReport(boot, rolledBack, { version: "1.0.0", failure, otherManifest: `sha256:${"1".repeat(64)}` }).rolledBack?.reason).toBe("required worker crash exited");
  });

  it("shows the state as unknown when no copy of the boot state is whole", () => {
    expect(slotReport({ slot: "a", kind: "fallback", triesLeft: 0 }, null, { version: NO_VERSION }).state).toBe("unknown");
  });
});

describe("checkSlotManifest", () => {
  it("checks the running slot's manifest and files, and returns its version", async () => {
    const boot = await slotDir("ok", { slot: "b", version: "1.2.0" });
    const check = await checkSlotManifest({ bootDir: boot, releasePub, slot: "b" });
    expect(check.status).toBe("ok");
    expect(check.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(check.version).toBe("1.2.0");
  });

  it("reads a manifest without a version as 0.0.0", async () => {
    const boot = await slotDir("unversioned", { slot: "a" });
    expect(await checkSlotManifest({ bootDir: boot, releasePub, slot: "a" })).toMatchObject({ status: "ok", version: "0.0.0" });
  });

  it("checks the slot's own files when its manifest lists them under the other slot's folder or under none", async () => {
    const written = await slotDir("listed-as-a", { slot: "b", listedAs: "/a" });
    expect((await checkSlotManifest({ bootDir: written, releasePub, slot: "b" })).status).toBe("ok");
    const bare = await slotDir("listed-bare", { slot: "b", listedAs: "" });
    expect((await checkSlotManifest({ bootDir: bare, releasePub, slot: "b" })).status).toBe("ok");
  });

  it("fails a changed file, a foreign key and a changed version, naming what differs", async () => {
    const changed = await slotDir("changed", { slot: "b", kernel: "kernel bytEs" });
    expect((await checkSlotManifest({ bootDir: changed, releasePub, slot: "b" })).status).toMatch(/^FAILED: \/b\/Image sha256 [0-9a-f]{64} differs from the manifest's/);
    const foreign = await slotDir("foreign", { slot: "a", key: otherKey });
    expect((await checkSlotManifest({ bootDir: foreign, releasePub, slot: "a" })).status).toMatch(/^FAILED: signed by key/);
    const bumped = await slotDir("bumped", { slot: "a", version: "1.0.0" });
    const file = join(bumped, "a", "manifest.json");
    await writeFile(file, (await readFile(file, "utf8")).replace('"1.0.0"', '"9.0.0"'));
    expect((await checkSlotManifest({ bootDir: bumped, releasePub, slot: "a" })).status).toMatch(/^FAILED: the signature does not verify/);
    expect((await checkSlotManifest({ bootDir: join(dir, "nowhere"), releasePub, slot: "a" })).status).toMatch(/^FAILED: cannot read /);
  });
});

describe("the try-failure record", () => {
  it("keeps why a try was not confirmed across a reboot, one line, until cleared", async () => {
    const state = join(dir, "state");
    expect(await readTryFailure(state)).toBeUndefined();
    await recordTryFailure(state, { slot: "b", reason: "required worker crash exited\nwith code 1" });
    expect(await readTryFailure(state)).toEqual({ slot: "b", reason: "required worker crash exited with code 1" });
    const manifest = `sha256:${"ab".repeat(32)}`;
    await recordTryFailure(state, { slot: "a", manifest, reason: "not healthy within 120 s: the lifecycle is not ONLINE" });
    expect(await readTryFailure(state)).toEqual({ slot: "a", manifest, reason: "not healthy within 120 s: the lifecycle is not ONLINE" });
    await clearTryFailure(state);
    expect(await readTryFailure(state)).toBeUndefined();
  });
});

describe("/proc/boot", () => {
  const appliances = useAppliances({ prefix: "cohesix-slot-boot-" });

  it("shows the slot lines on an A/B image, read each time, and none without slots", async () => {
    let lines = ["slot=b", "slot_version=1.2.0", "slot_state=trying", "tries_left=2"];
    const { app } = await appliances.start({ bootSlot: () => lines });
    const root = await appliances.attachQueen(app);
    expect(await root.readText("/proc/boot")).toMatch(/^slot=b\nslot_version=1\.2\.0\nslot_state=trying\ntries_left=2$/m);
    lines = ["slot=b", "slot_version=1.2.0", "slot_state=good", "tries_left=2"];
    expect(await root.readText("/proc/boot")).toMatch(/^slot_state=good$/m);

    const { app: plain } = await appliances.start();
    const text = await (await appliances.attachQueen(plain)).readText("/proc/boot");
    expect(text).not.toMatch(/^(slot|slot_version|slot_state|tries_left)=/m);
    expect(text).not.toMatch(/^rolled_back /m);
  });

  it("lets the root task spawn a required worker itself, committed like a queen's spawn, with no envelope under signed-ctl", async () => {
    const entry = join(appliances.dir, "sleeper.mjs");
    await writeFile(entry, "setInterval(() => {}, 1000);\n");
    const { app } = await appliances.start({ policy: "signed-ctl", programs: { sleeper: { entry, role: "worker-sleeper" } } });
    const id = await app.app.spawnWorker("sleeper");
    expect(id).toBe("worker-1");
    expect(app.app.state.workers[id]).toMatchObject({ kind: "sleeper", status: "running" });
    expect(app.app.queenLog.lines().join("\n")).toMatch(/ctl from root-task: \{"spawn":"sleeper"\}/);
  });
});
