/**
 * The floor image (the boot benchmark's baseline) and the boot scripts the
 * benchmark's figures depend on: the floor holds the runtime part — byte for
 * byte the appliance image's — and a READY script, and nothing of the
 * appliance; the appliance's /init sets the system up in the background and
 * its loader waits for that before importing the root task.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { loadBoard } from "../../boards/index.ts";
import {
  FLOOR_READY,
  GUEST,
  LOADER,
  SYSTEM_READY,
  buildFloorImage,
  buildImage,
  decompress,
  initScript,
  loaderScript,
  readCpio,
  runScript,
  type CpioEntry,
} from "../../rootfs/index.ts";
import { standInArtefacts, standInQueenPub } from "./fixtures.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "cohesix-floor-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const board = loadBoard("aarch64-virt");

const artefacts = standInArtefacts(join(work, "artefacts"), board, { moduleFolder: () => "drivers" });
const queenPub = standInQueenPub(join(work, "queen.pub"));

/** The gzip members of an initramfs, each decompressed. */
function parts(initrd: string): Buffer[] {
  const raw = decompress(readFileSync(initrd)); // gunzip reads every member
  const out: Buffer[] = [];
  for (let at = 0; at < raw.length; ) {
    const end = raw.indexOf("TRAILER!!!", at);
    const next = raw.indexOf("070701", end);
    out.push(raw.subarray(at, next < 0 ? raw.length : next));
    if (next < 0) break;
    at = next;
  }
  return out;
}

const text = (e: CpioEntry<Uint8Array> | undefined): string => new TextDecoder().decode((e as { data: Uint8Array }).data);

describe("buildFloorImage", () => {
  it("holds node, its libraries, busybox and the READY script, and none of the appliance", async () => {
    const floor = await buildFloorImage({ board, artefacts, outDir: join(work, "a", "floor"), cacheDir: join(work, "a", "cache"), strip: false });
    const entries = new Map(parts(floor.initrd).flatMap((p) => readCpio(p)).map((e) => [e.path, e]));
    expect(entries.has("usr/bin/node")).toBe(true);
    expect(entries.has("bin/busybox")).toBe(true);
    expect(entries.has(`lib/${board.sysroot.triplet}/libstdc++.so.6`)).toBe(true);
    expect(entries.get("dev/console")).toMatchObject({ type: "char", major: 5, minor: 1 });
    expect(text(entries.get("init"))).toMatch(/^#!\/bin\/busybox sh\n[^]*\/usr\/bin\/node \/etc\/cohesix\/floor\.mjs\n/);
    expect(text(entries.get("etc/cohesix/floor.mjs"))).toBe(`console.log(${JSON.stringify(FLOOR_READY)});\n`);
    expect([...entries.keys()].filter((p) => p.startsWith("opt/") || p === "etc/cohesix/config.json" || p === "etc/cohesix/queen.pub" || p === "etc/inittab")).toEqual([]);
    expect(floor.ready).toBe("READY floor");
    expect(floor.cmdline).toBe(board.kernel.cmdline);
    expect(floor.bytes).toBe(readFileSync(floor.initrd).length);
    expect(floor.uncompressedBytes).toBeGreaterThan(floor.runtimeBytes);
  }, 60_000);

  it("shares the appliance image's runtime part byte for byte, so the size ratio is the appliance's own", async () => {
    const cacheDir = join(work, "b", "cache");
    const floor = await buildFloorImage({ board, artefacts, outDir: join(work, "b", "floor"), cacheDir, strip: false });
    const full = await buildImage({ board, artefacts, queenPub, root, outDir: join(work, "b", "image"), cacheDir, strip: false });
    const [floorRuntime] = parts(floor.initrd);
    const [fullRuntime] = parts(full.initrd);
    expect(floorRuntime!.equals(fullRuntime!)).toBe(true);
    expect(floor.runtimeBytes).toBe(full.manifest.image.runtimeBytes);
    expect(full.manifest.image.uncompressedBytes).toBeGreaterThan(floor.uncompressedBytes);
  }, 60_000);
});

describe("boot scripts", () => {
  const init = { modules: ["/lib/modules/v/a.ko", "/lib/modules/v/b.ko"], address: "10.0.2.15/24", gateway: "10.0.2.2", stateDir: GUEST.stateDir };

  it("/init sets modules, network and the state disk up in the background, marks SYSTEM_READY, then execs busybox init", () => {
    const script = initScript(init);
    const open = script.indexOf("\n(\n");
    const close = script.indexOf("\n) &\n");
    expect(open).toBeGreaterThan(0);
    expect(close).toBeGreaterThan(open);
    const background = script.slice(open, close);
    for (const part of ["insmod /lib/modules/v/a.ko", "ip addr add 10.0.2.15/24 dev eth0", `"$state_dev" ${GUEST.stateDir}`, `: > ${SYSTEM_READY}`]) {
      expect(background).toContain(part);
    }
    expect(background.indexOf("a.ko")).toBeLessThan(background.indexOf("b.ko"));
    expect(script.trimEnd().endsWith("exec /bin/init")).toBe(true);
  });

  it("the run script starts Node on the loader (source maps on request); the loader waits for SYSTEM_READY, turns on the compile cache on the state disk and imports the root task", () => {
    const run = runScript(init);
    expect(run).toContain(`/usr/bin/node $node_flags ${LOADER} &\n`);
    expect(run).toContain('*" cohesix.sourcemaps=1 "*) node_flags=--enable-source-maps');
    const loader = loaderScript(init);
    expect(loader).not.toMatch(/^import /m); // an ES import of a built-in would load more of it
    const wait = loader.indexOf(JSON.stringify(SYSTEM_READY));
    const cache = loader.indexOf(`enableCompileCache?.(${JSON.stringify(`${GUEST.stateDir}/cache/node`)})`);
    const load = loader.indexOf('await import("/opt/cohesix/dist/guest.mjs")');
    expect(wait).toBeGreaterThan(0);
    expect(cache).toBeGreaterThan(wait);
    expect(load).toBeGreaterThan(cache);
    const file = join(work, "boot.mjs");
    writeFileSync(file, loader);
    execFileSync(process.execPath, ["--check", file]); // valid JavaScript
  });
});
