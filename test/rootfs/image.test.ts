/**
 * Image assembly with small stand-in artefacts: the same inputs give the
 * same bytes, the image holds what the guest needs at the right paths, and
 * images that cannot boot are refused with a message naming the problem.
 * (Pin and cache refusals of the real artefacts: artefacts.test.ts.)
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { loadBoard } from "../../boards/index.ts";
import { DEFAULT_IMAGE_WORKERS, buildImage, decompress, readCpio, type CpioEntry, type ImageBoard, type NativeSource } from "../../rootfs/index.ts";
import { standInArtefacts, standInQueenPub } from "./fixtures.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "cohesix-image-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const board = loadBoard("aarch64-virt");

const artefacts = standInArtefacts(join(work, "artefacts"), board, { moduleFolder: (_m, i) => `group${i % 3}` });
const queenPub = standInQueenPub(join(work, "queen.pub"));

function build(name: string, overrides: { board?: ImageBoard; workers?: readonly string[]; natives?: NativeSource } = {}) {
  return buildImage({
    board: overrides.board ?? board,
    artefacts,
    queenPub,
    root,
    outDir: join(work, name, "image"),
    cacheDir: join(work, name, "cache"),
    strip: false,
    ...(overrides.workers ? { workers: overrides.workers } : {}),
    ...(overrides.natives ? { natives: overrides.natives } : {}),
  });
}

/** Both archives of a built image, by path. */
function entriesOf(initrd: string): Map<string, CpioEntry<Uint8Array>> {
  const raw = decompress(readFileSync(initrd));
  const split = raw.indexOf("TRAILER!!!");
  const second = raw.subarray(raw.indexOf("070701", split));
  return new Map([...readCpio(raw), ...readCpio(second)].map((e) => [e.path, e]));
}

/** Stand-ins for the board's pinned sharp packages: a folder per package, and the names asked for. */
function fakeNatives(asked: string[][]): NativeSource {
  return async (packages) => {
    asked.push([...packages]);
    return packages.map((name) => {
      const dir = join(work, "natives", name);
      mkdirSync(join(dir, "lib"), { recursive: true });
      writeFileSync(join(dir, "package.json"), JSON.stringify({ name }));
      writeFileSync(join(dir, "lib", name.endsWith("libvips-linux-arm64") ? "libvips-cpp.so.8.17.3" : "sharp-linux-arm64.node"), `arm64 ${name}\n`);
      return { pin: { package: name }, dir };
    });
  };
}

describe("buildImage", () => {
  it("gives byte-identical images when built twice from the same inputs", async () => {
    const a = await build("one");
    const b = await build("two");
    expect(readFileSync(a.initrd).equals(readFileSync(b.initrd))).toBe(true);
    expect(a.manifest.digest).toBe(b.manifest.digest);
    expect(readFileSync(a.manifestPath, "utf8")).toBe(readFileSync(b.manifestPath, "utf8"));
  }, 60_000);

  it("lays out init, devices, node, libraries, modules, bundles and config where the guest looks", async () => {
    const built = await build("one");
    const raw = decompress(readFileSync(built.initrd));
    // Two concatenated archives: the runtime part, then the appliance part.
    const split = raw.indexOf("TRAILER!!!");
    const second = raw.subarray(raw.indexOf("070701", split));
    const entries = [...readCpio(raw), ...readCpio(second)];
    const byPath = new Map(entries.map((e) => [e.path, e]));
    expect(byPath.get("dev/console")).toMatchObject({ type: "char", major: 5, minor: 1 });
    expect(byPath.get("dev/null")).toMatchObject({ type: "char", major: 1, minor: 3 });
    expect(byPath.get("init")).toMatchObject({ type: "file", mode: 0o755 });
    expect(byPath.get(`lib/${board.sysroot.loader}`)).toMatchObject({ type: "symlink" });
    expect(byPath.has("usr/bin/node")).toBe(true);
    expect(byPath.has("opt/cohesix/package.json")).toBe(true);
    expect(byPath.has("opt/cohesix/dist/guest.mjs")).toBe(true);
    expect(byPath.has("opt/cohesix/dist/workers/heartbeat.mjs")).toBe(true);
    expect(byPath.has("etc/cohesix/queen.pub")).toBe(true);
    const init = new TextDecoder().decode((byPath.get("init") as { data: Uint8Array }).data);
    const order = board.kernel.modules.map((m) => init.indexOf(`/${m}.ko`));
    expect(order.every((i, k) => i > 0 && (k === 0 || i > order[k - 1]!))).toBe(true);
    expect(built.manifest.cmdline).toContain(`cohesix.image=${built.manifest.digest}`);
  }, 60_000);

  it("refuses an image whose board lists a module the kernel lacks, naming it", async () => {
    const bad = { ...board, kernel: { ...board.kernel, modules: [...board.kernel.modules, "no_such_module"] } };
    await expect(build("bad-module", { board: bad })).rejects.toThrow(/module no_such_module is not in kernel 6\.1\.0-test-arm64/);
  }, 60_000);

  it("refuses an image over the board's size limit", async () => {
    await expect(build("too-big", { board: { ...board, sizeLimitBytes: 1000 } })).rejects.toThrow(/too big: aarch64-virt initramfs is .* over its limit/);
  }, 60_000);

  it("carries the heartbeat and gpu workers only by default: no inference worker, no sharp, no node_modules", async () => {
    const built = await build("default-workers");
    const byPath = entriesOf(built.initrd);
    expect(DEFAULT_IMAGE_WORKERS).toEqual(["heartbeat", "gpu"]);
    expect(built.manifest.workers).toEqual(["gpu", "heartbeat"]);
    expect(built.manifest.natives).toEqual([]);
    expect(byPath.has("opt/cohesix/dist/workers/gpu.mjs")).toBe(true);
    expect(byPath.has("opt/cohesix/dist/workers/inference.mjs")).toBe(false);
    expect([...byPath.keys()].some((p) => p.includes("node_modules") || p.includes("sample.png"))).toBe(false);
    const config = JSON.parse(new TextDecoder().decode((byPath.get("etc/cohesix/config.json") as { data: Uint8Array }).data)) as { workers: string[] };
    expect(config.workers).toEqual(["gpu", "heartbeat"]);
  }, 60_000);

  it("with the inference worker: its bundle with sharp inside, its sample image, and the board's pinned sharp natives under node_modules", async () => {
    const asked: string[][] = [];
    const built = await build("inference", { workers: [...DEFAULT_IMAGE_WORKERS, "inference"], natives: fakeNatives(asked) });
    expect(asked).toEqual([["@img/sharp-linux-arm64", "@img/sharp-libvips-linux-arm64"]]);
    expect(built.manifest.workers).toEqual(["gpu", "heartbeat", "inference"]);
    expect(built.manifest.natives).toEqual(["@img/sharp-linux-arm64@0.34.5", "@img/sharp-libvips-linux-arm64@1.2.4"]);
    const byPath = entriesOf(built.initrd);
    const text = (p: string): string => new TextDecoder().decode((byPath.get(p) as { data: Uint8Array }).data);
    // sharp's JavaScript is bundled; only its native packages stay external
    expect(text("opt/cohesix/dist/workers/inference.mjs")).toContain("@img/sharp-");
    expect([...byPath.keys()].some((p) => p.startsWith("opt/cohesix/node_modules/sharp/"))).toBe(false);
    expect(readFileSync(join(root, "workers", "inference", "sample.png")).equals(Buffer.from((byPath.get("opt/cohesix/dist/workers/inference/sample.png") as { data: Uint8Array }).data))).toBe(true);
    expect(text("opt/cohesix/node_modules/@img/sharp-linux-arm64/lib/sharp-linux-arm64.node")).toBe("arm64 @img/sharp-linux-arm64\n");
    expect(byPath.get("opt/cohesix/node_modules/@img/sharp-libvips-linux-arm64/lib/libvips-cpp.so.8.17.3")).toMatchObject({ type: "file", mode: 0o755 });
    expect(JSON.parse(text("etc/cohesix/config.json")).workers).toEqual(["gpu", "heartbeat", "inference"]);
    // the same inputs, the same bytes
    const again = await build("inference-again", { workers: ["inference", "gpu", "heartbeat"], natives: fakeNatives([]) });
    expect(again.manifest.digest).toBe(built.manifest.digest);
  }, 60_000);

  it("refuses an unknown worker kind, and a worker that needs natives when no source for them is given", async () => {
    await expect(build("unknown-worker", { workers: ["heartbeat", "camera"] })).rejects.toThrow(/not found: image: no worker program "camera" \(available: gpu, heartbeat, inference\)/);
    await expect(build("no-natives", { workers: ["inference"] })).rejects.toThrow(/image: the workers need @img\/sharp-linux-arm64@0\.34\.5, @img\/sharp-libvips-linux-arm64@1\.2\.4 but no native package source was given/);
  }, 60_000);
});
