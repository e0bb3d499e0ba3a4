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
import { buildImage, decompress, readCpio, type ImageArtefacts, type ImageBoard } from "../../rootfs/index.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "cohesix-image-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const board = loadBoard("aarch64-virt");
const version = "6.1.0-test-arm64";

function fakeArtefacts(): ImageArtefacts {
  const a = join(work, "artefacts");
  const put = (path: string, text: string): string => {
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, text);
    return path;
  };
  const modules = join(a, "lib", "modules", version);
  board.kernel.modules.forEach((m, i) => put(join(modules, "kernel", `group${i % 3}`, `${m}.ko`), `module ${m}\n`));
  for (const lib of [board.sysroot.loader, ...board.sysroot.libraries]) put(join(a, "sysroot", "lib", board.sysroot.triplet, lib), `library ${lib}\n`);
  return {
    node: put(join(a, "node"), "node binary\n"),
    busybox: put(join(a, "busybox"), "busybox binary\n"),
    kernel: put(join(a, "Image"), "kernel image\n"),
    sysroot: join(a, "sysroot"),
    modules,
    kernelVersion: version,
  };
}

const artefacts = fakeArtefacts();
const queenPub = join(work, "queen.pub");
writeFileSync(queenPub, "cohesix-ed25519-public test\n");

function build(name: string, overrides: { board?: ImageBoard } = {}) {
  return buildImage({ board: overrides.board ?? board, artefacts, queenPub, root, outDir: join(work, name, "image"), cacheDir: join(work, name, "cache"), strip: false });
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
});
