/**
 * Interop with GNU cpio (Debian package `cpio`, installed by scripts/setup.sh):
 * its newc output is the reference for our bytes, and its extractor checks
 * that our hard links, symlinks and device nodes mean what we intend.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { readCpio, writeCpio, type CpioEntry } from "../../rootfs/index.ts";

const haveCpio = spawnSync("cpio", ["--version"]).status === 0;
const work = mkdtempSync(join(tmpdir(), "cohesix-cpio-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const cpio = (args: string[], options: { input?: Uint8Array; cwd?: string } = {}): Buffer =>
  execFileSync("cpio", args, { input: options.input, cwd: options.cwd ?? work, stdio: ["pipe", "pipe", "pipe"] });

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

const entries: CpioEntry[] = [
  { type: "file", path: "/etc/hostname", data: text("cohesix\n") },
  { type: "hardlink", path: "/etc/hn2", target: "/etc/hostname" },
  { type: "symlink", path: "/etc/name", target: "hostname" },
  { type: "dir", path: "/tmp", mode: 0o1777 },
  { type: "file", path: "/usr/lib/node/main.js", data: text("console.log('READY');\n"), mode: 0o755 },
  { type: "dir", path: "/usr/share" },
];

describe.skipIf(!haveCpio)("GNU cpio", () => {
  test("writes the same bytes as cpio -o -H newc --reproducible -R 0:0", () => {
    const tree = join(work, "tree");
    mkdirSync(join(tree, "etc"), { recursive: true });
    mkdirSync(join(tree, "tmp"));
    mkdirSync(join(tree, "usr/lib/node"), { recursive: true });
    mkdirSync(join(tree, "usr/share"));
    writeFileSync(join(tree, "etc/hostname"), "cohesix\n");
    chmodSync(join(tree, "etc/hostname"), 0o644);
    linkSync(join(tree, "etc/hostname"), join(tree, "etc/hn2"));
    symlinkSync("hostname", join(tree, "etc/name"));
    writeFileSync(join(tree, "usr/lib/node/main.js"), "console.log('READY');\n");
    chmodSync(join(tree, "usr/lib/node/main.js"), 0o755);
    for (const d of ["etc", "usr", "usr/lib", "usr/lib/node", "usr/share"]) chmodSync(join(tree, d), 0o755);
    chmodSync(join(tree, "tmp"), 0o1777);
    execFileSync("sh", ["-c", "find . -mindepth 1 -exec touch -h -d @0 {} +"], { cwd: tree });
    const list = execFileSync("sh", ["-c", "find . -mindepth 1 -printf '%P\\n' | LC_ALL=C sort"], { cwd: tree });
    const gnu = cpio(["-o", "-H", "newc", "--reproducible", "-R", "0:0", "--quiet"], { input: list, cwd: tree });

    const ours = writeCpio(entries, { mtime: 0 });
    expect(ours.toString("latin1")).toBe(gnu.subarray(0, ours.length).toString("latin1"));
    // GNU cpio pads the archive to 512-byte blocks; the kernel needs no padding.
    expect(gnu.subarray(ours.length).every((b) => b === 0)).toBe(true);
    expect(gnu.length % 512).toBe(0);
    // And our reader reads GNU's archive, padding included.
    expect(writeCpio(readCpio(gnu), { mtime: 0 }).equals(ours)).toBe(true);
  });

  test("extracts our hard links as one inode carrying the data, and our symlinks", () => {
    const out = join(work, "extract");
    mkdirSync(out);
    cpio(["-i", "-d", "-m", "--no-absolute-filenames", "--quiet"], { input: writeCpio(entries), cwd: out });
    const a = statSync(join(out, "etc/hostname"));
    const b = statSync(join(out, "etc/hn2"));
    expect(b.ino).toBe(a.ino);
    expect(a.nlink).toBe(2);
    expect(readFileSync(join(out, "etc/hn2"), "utf8")).toBe("cohesix\n");
    expect(lstatSync(join(out, "etc/name")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(out, "etc/name"))).toBe("hostname");
    expect(statSync(join(out, "usr/lib/node/main.js")).mode & 0o777).toBe(0o755);
    expect(statSync(join(out, "tmp")).mode & 0o7777).toBe(0o1777);
  });

  test("lists /dev/console as char 5,1 and /dev/null as char 1,3", () => {
    const archive = writeCpio([
      { type: "char", path: "/dev/console", major: 5, minor: 1, mode: 0o600 },
      { type: "char", path: "/dev/null", major: 1, minor: 3, mode: 0o666 },
    ]);
    const listing = cpio(["-t", "-v", "--quiet"], { input: archive }).toString();
    expect(listing).toMatch(/^crw------- +1 root +root +5, +1 .* dev\/console$/m);
    expect(listing).toMatch(/^crw-rw-rw- +1 root +root +1, +3 .* dev\/null$/m);
    expect(listing).toMatch(/^drwxr-xr-x +2 root +root .* dev$/m);
  });
});
