/**
 * `cohesix flash` and `cohesix console` as programs: --target-file writes
 * and verifies, a tampered image is refused with nothing written, the
 * default release key comes from the config home, confirmation needs a
 * terminal or --yes (a real one, through script(1)), --list and refusals
 * on a fake machine (COHESIX_FLASH_ROOT), usage errors exit 2; the console
 * finds READY on a pty, times out with a message, forwards piped keys and
 * ends at Ctrl-].
 */
import { execa } from "execa";
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { GiB, MiB, head, makeFakeRoot, type FakeRoot } from "../flash/fake-system.ts";
import { openBoardEnd, startPtyPair, type BoardEnd, type PtyPair } from "../flash/pty-pair.ts";
import { copyImage, makeSignedImage, type SignedImage } from "../flash/signed-image.ts";
import { BIN, ROOT, cohesix } from "./helpers.ts";

// Each test checks a real ~70 MiB image (sha256 and mtools) once or more: generous under load.
vi.setConfig({ testTimeout: 180_000 });

let dir = "";
let img: SignedImage;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-cli-flash-"));
  img = await makeSignedImage(dir);
}, 60_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("cohesix flash", () => {
  it("--target-file writes the image, reads it back, and reports progress as plain lines off a terminal", async () => {
    const out = join(dir, "card.img");
    const r = await cohesix(["flash", img.image, "--target-file", out, "--yes", "--pub", img.pub]);
    expect(r.stderr).toMatch(/writing: 0% \(0 B of \d+(\.\d)? MiB\)\n/);
    expect(r.stderr).toMatch(/writing: \d+(\.\d)? MiB in \d+\.\d s \(/);
    expect(r.stderr).toMatch(/verifying: \d+(\.\d)? MiB in \d+\.\d s/);
    expect(r.stderr).toContain(`wrote and verified ${out}: sha256 ${img.sha256}`);
    expect(r.stderr).not.toContain("\r");
    expect(r.exitCode).toBe(0);
    expect(Buffer.compare(await readFile(out), await readFile(img.image))).toBe(0);
  });

  it("takes the release key from $XDG_CONFIG_HOME/cohesix/release.pub by default", async () => {
    const config = join(dir, "config");
    await mkdir(join(config, "cohesix"), { recursive: true });
    await copyFile(img.pub, join(config, "cohesix", "release.pub"));
    const r = await cohesix(["flash", img.image, "--target-file", join(dir, "default-key.img"), "--yes"], { env: { XDG_CONFIG_HOME: config } });
    expect(r.exitCode).toBe(0);
    const none = await cohesix(["flash", img.image, "--target-file", join(dir, "no-key.img"), "--yes"], { env: { XDG_CONFIG_HOME: join(dir, "empty-config") } });
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toMatch(/^permission: refusing to flash .*empty-config\/cohesix\/release\.pub/);
  });

  it("refuses a tampered image and creates no file", async () => {
    const bad = await copyImage(img.image, join(dir, "bad.img"), 2 << 20);
    const out = join(dir, "never.img");
    const r = await cohesix(["flash", bad, "--target-file", out, "--yes", "--pub", img.pub]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^permission: refusing to flash: .*bad\.img: sha256 [0-9a-f]{64} differs from the signed [0-9a-f]{64}: a byte of the image changed; do not flash it; nothing was written$/);
    await expect(stat(out)).rejects.toThrow(/ENOENT/);
    const wrongKey = await cohesix(["flash", img.image, "--target-file", out, "--yes", "--pub", img.otherPub]);
    expect(wrongKey.exitCode).toBe(1);
    expect(wrongKey.stderr).toMatch(/wrong key/);
    await expect(stat(out)).rejects.toThrow(/ENOENT/);
  });

  it("refuses to overwrite without --yes when stdin is not a terminal", async () => {
    const out = join(dir, "keep.img");
    await writeFile(out, "keep");
    const r = await cohesix(["flash", img.image, "--target-file", out, "--pub", img.pub]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^permission: stdin is not a terminal, so nobody can confirm: pass --yes/);
    expect(await readFile(out, "utf8")).toBe("keep");
  });

  it("asks on a terminal: no keeps the file, yes writes it", async () => {
    const out = join(dir, "asked.img");
    await writeFile(out, "keep");
    // script(1) runs the command on a pty; the answer is typed once the question shows.
    const line = async (answer: string) => {
      const child = execa("script", ["-qec", `node ${BIN} flash ${img.image} --target-file ${out} --pub ${img.pub}`, "/dev/null"], { cwd: ROOT, stdin: "pipe", reject: false, timeout: 60_000 });
      let shown = "";
      child.stdout!.on("data", (b: Buffer) => {
        const before = shown;
        shown += b.toString();
        if (!before.includes("[y/N]") && shown.includes("[y/N]")) child.stdin!.write(`${answer}\r`);
      });
      const r = await child;
      return { ...r, stdout: shown };
    };
    const no = await line("n");
    expect(no.stdout).toMatch(/Overwrite .*asked\.img with .*good\.img \(\d+(\.\d)? MiB\)\? \[y\/N\]/);
    expect(no.exitCode).toBe(1);
    expect(no.stdout).toMatch(/permission: not confirmed: nothing was written/);
    expect(await readFile(out, "utf8")).toBe("keep");
    const yes = await line("y");
    expect(yes.exitCode, yes.stdout).toBe(0);
    // On a terminal the bar redraws one line.
    expect(yes.stdout).toMatch(/\rwriting \[[#-]+\] +\d+%/);
    expect((await stat(out)).size).toBe(img.size);
  });

  describe("on a fake machine", () => {
    let fake: FakeRoot;
    beforeAll(async () => {
      fake = await makeFakeRoot({
        disks: [
          { name: "nvme0n1", size: 256 * GiB, model: "Internal SSD", dev: "259:0", partitions: [{ name: "nvme0n1p1", size: 200 * GiB, dev: "259:1" }] },
          { name: "sdb", size: 128 * MiB, removable: true, model: "Card", dev: "8:16", partitions: [{ name: "sdb1", size: 64 * MiB, dev: "8:17" }], node: true },
        ],
        mounts: [["/dev/nvme0n1p1", "/"], ["/dev/sdb1", "/media/card"]],
        rootDev: "259:1",
      });
    });
    afterAll(async () => {
      await fake?.remove();
    });
    const env = () => ({ COHESIX_FLASH_ROOT: fake.root });

    it("--list prints every disk with why it is refused", async () => {
      const r = await cohesix(["flash", "--list"], { env: env() });
      expect(r.exitCode).toBe(0);
      const lines = r.stdout.trimEnd().split("\n");
      expect(lines[0]).toMatch(/^DEVICE +SIZE +MODEL +REMOVABLE +MOUNTED +STATUS$/);
      expect(lines[1]).toMatch(/nvme0n1 +256 GiB +Internal SSD +no +\/ +refused: holds \/ \(this machine's own disk\); not removable/);
      expect(lines[2]).toMatch(/sdb +128 MiB +Card +yes +\/media\/card +refused: mounted at \/media\/card \(pass --unmount to unmount it\)/);
    });

    it("refuses the mounted card, and the system disk even with --unmount", async () => {
      const r = await cohesix(["flash", img.image, "--yes", "--pub", img.pub], { env: env() });
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/permission: no disk can be flashed/);
      const sys = await cohesix(["flash", img.image, "--device", "/dev/nvme0n1", "--unmount", "--yes", "--pub", img.pub], { env: env() });
      expect(sys.exitCode).toBe(1);
      expect(sys.stderr).toMatch(/permission: refusing .*nvme0n1: holds \/ \(this machine's own disk\); not removable/);
      expect((await head(fake.node("sdb"), 4096)).every((b) => b === 0)).toBe(true);
    });

    it("with --unmount runs no command on a fake machine and stops at the failed umount", async () => {
      const r = await cohesix(["flash", img.image, "--unmount", "--yes", "--pub", img.pub], { env: env() });
      expect(r.stderr).toMatch(/\(fake system: not running umount \/media\/card\)/);
      expect(r.stderr).toMatch(/busy: umount \/media\/card failed/);
      expect(r.exitCode).toBe(1);
      expect((await head(fake.node("sdb"), 4096)).every((b) => b === 0)).toBe(true);
    });
  });

  it("answers usage errors with exit 2", async () => {
    for (const args of [
      ["flash"],
      ["flash", img.image, "--device", "sdb", "--target-file", "x.img"],
      ["flash", img.image, "--max-size", "huge"],
      ["flash", "--list", img.image],
      ["flash", img.image, "--bogus"],
    ]) {
      const r = await cohesix(args);
      expect(r.exitCode, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(/usage: cohesix flash FILE/);
    }
  });
});

describe("cohesix console", () => {
  async function pair(): Promise<PtyPair> {
    const p = await startPtyPair();
    cleanups.push(() => p.stop());
    return p;
  }
  async function board(path: string): Promise<BoardEnd> {
    const end = await openBoardEnd(path);
    cleanups.push(() => end.close());
    return end;
  }
  /** Resolves when the child's stderr says the port is open. */
  function whenOpen(child: ReturnType<typeof execa>): Promise<void> {
    return new Promise((resolve) => {
      let text = "";
      child.stderr!.on("data", (b: Buffer) => {
        text += b.toString();
        if (/waiting for|connected to/.test(text)) resolve();
      });
    });
  }

  it("--expect READY exits 0 once READY arrives, with everything on stdout and in the log", async () => {
    const p = await pair();
    const b = await board(p.board);
    const log = join(dir, "console.log");
    const child = execa("node", [BIN, "console", "--port", p.host, "--expect", "READY", "--timeout", "60", "--log", log], { cwd: ROOT, reject: false, stripFinalNewline: false });
    await whenOpen(child);
    await b.write("U-Boot\r\nStarting kernel ...\r\nREA");
    await b.write("DY\r\n");
    const r = await child;
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("Starting kernel ...\r\nREADY");
    expect(r.stderr).toMatch(new RegExp(`waiting for "READY" on ${p.host} \\(timeout 60 s\\)`));
    expect(await readFile(log, "latin1")).toBe(r.stdout);
  });

  it("exits 1 with a message when the text does not come in time", async () => {
    const p = await pair();
    const r = await cohesix(["console", "--port", p.host, "--expect", "NEVER", "--timeout", "1"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`io: "NEVER" did not appear on ${p.host} within 1 s \\(0 bytes received\\)`));
  });

  it("forwards piped keys and ends at Ctrl-]", async () => {
    const p = await pair();
    const b = await board(p.board);
    const child = execa("node", [BIN, "console", "--port", p.host], { cwd: ROOT, reject: false, stdin: "pipe" });
    await whenOpen(child);
    child.stdin!.write("uname -a\r");
    const end = Date.now() + 20_000;
    while (!b.received().includes("uname -a\r") && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(b.received()).toBe("uname -a\r");
    child.stdin!.write("\x1d");
    const r = await child;
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toMatch(/\[console closed\]/);
  });

  it("answers usage errors with exit 2", async () => {
    for (const args of [["console"], ["console", "--port", "/dev/ttyUSB0", "--timeout", "5"], ["console", "--port", "/dev/ttyUSB0", "--baud", "fast"], ["console", "--port", "/dev/ttyUSB0", "--expect", "X", "--timeout", "-1"]]) {
      const r = await cohesix(args);
      expect(r.exitCode, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(/usage: cohesix console --port DEV/);
    }
  });

  it("names a missing port", async () => {
    const r = await cohesix(["console", "--port", "/dev/ttyNOPE7"], { timeoutMs: 20_000 });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^not found: \/dev\/ttyNOPE7: no such serial port/);
  });
});
