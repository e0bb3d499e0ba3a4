/**
 * flashImage(): a tampered image (changed byte, wrong key, missing entry,
 * no manifest) is refused before any byte is written; a fake machine's SD
 * card is chosen, confirmed, unmounted when asked, written, read back and
 * its partition table re-read; every refusal leaves the disks untouched.
 * Disks are sparse files in a fake /dev; system commands go to a recording
 * runner.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { signDocument, readPrivateKey } from "../../root-task/index.ts";
import { RefusedError, flashImage, manifestPathOf, systemView, type FlashOptions, type Runner } from "../../flash/index.ts";
import { BusyError } from "../../nine-door/index.ts";
import { GiB, MiB, head, laptop, makeFakeRoot, type FakeMachine, type FakeRoot } from "./fake-system.ts";
import { copyImage, makeSignedImage, type SignedImage } from "./signed-image.ts";

// Each test checks a real ~70 MiB image (sha256 and mtools) once or more: generous under load.
vi.setConfig({ testTimeout: 180_000 });

let dir = "";
let img: SignedImage;
let imageBytes: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-flash-"));
  img = await makeSignedImage(dir);
  imageBytes = await readFile(img.image);
}, 60_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A runner that records calls and answers from `answers` (exit 0 by default). */
function recorder(answers: Record<string, number> = {}): Runner & { calls: string[] } {
  const calls: string[] = [];
  const run = (async (file: string, args: readonly string[]) => {
    const line = [file, ...args].join(" ");
    calls.push(line);
    const code = Object.entries(answers).find(([prefix]) => line.startsWith(prefix))?.[1] ?? 0;
    return { exitCode: code, stderr: code === 0 ? "" : `${file}: failed` };
  }) as Runner & { calls: string[] };
  run.calls = calls;
  return run;
}

interface Machine {
  readonly fake: FakeRoot;
  readonly log: string[];
  options(over?: Partial<FlashOptions>): FlashOptions;
  /** True when the fake disk's node still reads as zeros where the image would go. */
  untouched(name: string): Promise<boolean>;
}

async function machine(desc: FakeMachine): Promise<Machine> {
  const fake = await makeFakeRoot(desc);
  const log: string[] = [];
  return {
    fake,
    log,
    options: (over = {}) => ({ pubKeyFile: img.pub, view: systemView(fake.root), run: recorder(), log: (t) => log.push(t), yes: true, ...over }),
    untouched: async (name) => (await head(fake.node(name), imageBytes.length)).every((x) => x === 0),
  };
}

async function refused(p: Promise<unknown>): Promise<RefusedError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(RefusedError);
    return err as RefusedError;
  }
  throw new Error("expected a refusal");
}

/** A one-card machine: a 256 MiB removable sdb with a node, root on sda. */
const oneCard = (over: Partial<FakeMachine> = {}): FakeMachine => ({
  disks: [
    { name: "sda", size: 64 * GiB, dev: "8:0", partitions: [{ name: "sda1", size: 60 * GiB, dev: "8:1" }] },
    { name: "sdb", size: 256 * MiB, removable: true, model: "Card", dev: "8:16", partitions: [{ name: "sdb1", size: 100 * MiB, dev: "8:17" }], node: true },
  ],
  mounts: [["/dev/sda1", "/"]],
  rootDev: "8:1",
  ...over,
});

describe("flashImage(): the manifest is checked before anything is written", () => {
  it("refuses an image with one changed byte; the card keeps its bytes", async () => {
    const m = await machine(oneCard());
    try {
      const bad = await copyImage(img.image, join(dir, "byte.img"), (1 << 20) + 4096);
      const err = await refused(flashImage(bad, m.options()));
      expect(err.message).toMatch(/^permission: refusing to flash: .*byte\.img: .*sha256 [0-9a-f]{64} differs from the signed [0-9a-f]{64}.*; nothing was written$/);
      expect(await m.untouched("sdb")).toBe(true);
      expect(m.log).toEqual([]); // not even the disk list: the image was refused first
    } finally {
      await m.fake.remove();
    }
  });

  it("refuses an image checked with the wrong release key", async () => {
    const m = await machine(oneCard());
    try {
      const err = await refused(flashImage(img.image, m.options({ pubKeyFile: img.otherPub })));
      expect(err.message).toMatch(/is signed by key [0-9a-f]{16}, not by the release key [0-9a-f]{16}: wrong key/);
      expect(await m.untouched("sdb")).toBe(true);
    } finally {
      await m.fake.remove();
    }
  });

  it("refuses a manifest with a missing entry, even re-signed with the right key", async () => {
    const m = await machine(oneCard());
    try {
      const copy = await copyImage(img.image, join(dir, "missing.img"));
      const manifest = JSON.parse(await readFile(manifestPathOf(copy), "utf8")) as Record<string, unknown>;
      const { keyId: _k, publicKey: _p, signature: _s, ...unsigned } = manifest;
      unsigned.artefacts = (unsigned.artefacts as { path: string }[]).filter((a) => a.path !== "/initrd.gz");
      const key = await readPrivateKey(join(dir, "keys", "release.key"));
      await writeFile(manifestPathOf(copy), JSON.stringify(signDocument(unsigned, key)));
      const err = await refused(flashImage(copy, m.options()));
      expect(err.message).toMatch(/\/initrd\.gz, which the manifest does not list.*nothing was written/);
      expect(await m.untouched("sdb")).toBe(true);
    } finally {
      await m.fake.remove();
    }
  });

  it("refuses an image without its manifest, and a missing public key", async () => {
    const m = await machine(oneCard());
    try {
      const bare = join(dir, "bare.img");
      await writeFile(bare, imageBytes);
      expect((await refused(flashImage(bare, m.options()))).message).toMatch(/no manifest .*bare\.img\.manifest\.json/);
      expect((await refused(flashImage(img.image, m.options({ pubKeyFile: join(dir, "nope.pub") })))).message).toMatch(/^permission: refusing to flash .*good\.img: .*nope\.pub/);
      expect(await m.untouched("sdb")).toBe(true);
    } finally {
      await m.fake.remove();
    }
  });

  it("refuses a tampered image with --target-file too: the file is never created", async () => {
    const bad = await copyImage(img.image, join(dir, "byte2.img"), 3 << 20);
    const target = join(dir, "never.img");
    await refused(flashImage(bad, { pubKeyFile: img.pub, targetFile: target, yes: true, log: () => {} }));
    await expect(stat(target)).rejects.toThrow(/ENOENT/);
  });
});

describe("flashImage(): choosing, confirming and writing a disk", () => {
  it("auto-selects the only card, writes it, reads it back and re-reads the partition table", async () => {
    const m = await machine(oneCard());
    try {
      const run = recorder();
      const r = await flashImage(img.image, m.options({ run }));
      expect(r.target).toBe(m.fake.node("sdb"));
      expect(r.sha256).toBe(img.sha256);
      expect(r.partitionsReread).toBe(true);
      expect((await stat(m.fake.node("sdb"))).size).toBe(256 * MiB); // a disk is never truncated
      expect(Buffer.compare(await head(m.fake.node("sdb"), imageBytes.length), imageBytes)).toBe(0);
      expect(run.calls).toEqual([`blockdev --flushbufs ${m.fake.node("sdb")}`, `blockdev --rereadpt ${m.fake.node("sdb")}`]);
      const text = m.log.join("");
      expect(text).toMatch(/^DEVICE +SIZE +MODEL +REMOVABLE +MOUNTED +STATUS\n/);
      expect(text).toMatch(/sda +64 GiB +- +no +\/ +refused: holds \//);
      expect(text).toMatch(/sdb +256 MiB +Card +yes +- +candidate/);
      expect(text).toMatch(/wrote and verified .*sdb: sha256 [0-9a-f]{64}; it is safe to remove/);
      expect(m.log.join("")).not.toMatch(/warning/);
    } finally {
      await m.fake.remove();
    }
  });

  it("falls back to partx when blockdev cannot re-read, and warns when neither can", async () => {
    const m = await machine(oneCard());
    try {
      const partx = recorder({ "blockdev --rereadpt": 1 });
      expect((await flashImage(img.image, m.options({ run: partx }))).partitionsReread).toBe(true);
      expect(partx.calls.at(-1)).toBe(`partx -u ${m.fake.node("sdb")}`);
      const neither = recorder({ "blockdev --rereadpt": 1, partx: 1 });
      expect((await flashImage(img.image, m.options({ run: neither }))).partitionsReread).toBe(false);
      expect(m.log.join("")).toMatch(/warning: the kernel did not re-read .*sdb's partition table .*unplug and replug the card/);
    } finally {
      await m.fake.remove();
    }
  });

  it("asks before writing, naming the device, and writes only after yes", async () => {
    const m = await machine(oneCard());
    try {
      const questions: string[] = [];
      await refused(flashImage(img.image, m.options({ yes: false, confirm: async (q) => (questions.push(q), false) })));
      expect(questions[0]).toMatch(/^Write .*good\.img \(\d+(\.\d)? MiB\) to .*sdb \(Card, 256 MiB\)\? Everything on it will be erased\. \[y\/N\] $/);
      expect(await m.untouched("sdb")).toBe(true);
      await flashImage(img.image, m.options({ yes: false, confirm: async () => true }));
      expect(await m.untouched("sdb")).toBe(false);
    } finally {
      await m.fake.remove();
    }
  });

  it("refuses without --yes when nobody can confirm (stdin is not a terminal)", async () => {
    const m = await machine(oneCard());
    try {
      const err = await refused(flashImage(img.image, m.options({ yes: false })));
      expect(err.message).toMatch(/stdin is not a terminal, so nobody can confirm: pass --yes/);
      expect(await m.untouched("sdb")).toBe(true);
    } finally {
      await m.fake.remove();
    }
  });

  it("refuses the disk holding /, a non-removable disk and a too-small card when named with --device", async () => {
    const m = await machine({
      ...oneCard(),
      disks: [
        ...oneCard().disks.map((d) => ({ ...d, node: true })),
        { name: "sdc", size: 64 * GiB, removable: false, dev: "8:32", node: true },
        { name: "sdd", size: 8 * MiB, removable: true, dev: "8:48", node: true },
      ],
    });
    try {
      expect((await refused(flashImage(img.image, m.options({ device: "/dev/sda" })))).refusals.map((r) => r.code)).toEqual(["system", "not-removable", "mounted"]);
      expect((await refused(flashImage(img.image, m.options({ device: "sdc" })))).refusals.map((r) => r.code)).toEqual(["not-removable"]);
      expect((await refused(flashImage(img.image, m.options({ device: m.fake.node("sdd") })))).refusals.map((r) => r.code)).toEqual(["too-small"]);
      for (const d of ["sda", "sdc"]) expect(await m.untouched(d)).toBe(true);
      // sdd is smaller than the image: untouched means all zeros.
      expect((await readFile(m.fake.node("sdd"))).every((x) => x === 0)).toBe(true);
      // The one candidate is still chosen when nothing is named.
      expect((await flashImage(img.image, m.options())).target).toBe(m.fake.node("sdb"));
    } finally {
      await m.fake.remove();
    }
  });

  it("refuses to choose between two cards, and writes the one named with --device", async () => {
    const m = await machine({
      disks: [
        { name: "sdb", size: 256 * MiB, removable: true, dev: "8:16", node: true },
        { name: "mmcblk0", size: 512 * MiB, dev: "179:0", node: true },
      ],
    });
    try {
      expect((await refused(flashImage(img.image, m.options()))).message).toMatch(/2 candidate disks: pick one with --device/);
      expect(await m.untouched("sdb")).toBe(true);
      expect(await m.untouched("mmcblk0")).toBe(true);
      expect((await flashImage(img.image, m.options({ device: "/dev/mmcblk0" }))).target).toBe(m.fake.node("mmcblk0"));
      expect(await m.untouched("sdb")).toBe(true);
    } finally {
      await m.fake.remove();
    }
  });

  it("refuses a mounted card; with --unmount unmounts its partitions (deepest first) and writes", async () => {
    const desc = oneCard({ mounts: [["/dev/sda1", "/"], ["/dev/sdb1", "/media/me/BOOT"], ["/dev/sdb1", "/media/me/BOOT/inner"]] });
    const m = await machine(desc);
    try {
      expect((await refused(flashImage(img.image, m.options()))).message).toMatch(/no disk can be flashed.*\n(.*\n)*.*sdb.*mounted at \/media\/me\/BOOT, \/media\/me\/BOOT\/inner \(pass --unmount/);
      expect(await m.untouched("sdb")).toBe(true);

      const calls: string[] = [];
      const run: Runner = async (file, args) => {
        calls.push([file, ...args].join(" "));
        if (file === "umount") await m.fake.setMounts([["/dev/sda1", "/"]]);
        return { exitCode: 0, stderr: "" };
      };
      await flashImage(img.image, m.options({ unmount: true, run }));
      expect(calls.slice(0, 2)).toEqual(["umount /media/me/BOOT/inner", "umount /media/me/BOOT"]);
      expect(await m.untouched("sdb")).toBe(false);
      expect(m.log.join("")).toMatch(/unmounting .*sdb1 from \/media\/me\/BOOT\/inner/);
    } finally {
      await m.fake.remove();
    }
  });

  it("stops when umount fails, and when the card is mounted again behind its back", async () => {
    const m = await machine(oneCard({ mounts: [["/dev/sda1", "/"], ["/dev/sdb1", "/media/me/BOOT"]] }));
    try {
      const failing = recorder({ umount: 32 });
      const busy = flashImage(img.image, m.options({ unmount: true, run: failing }));
      await expect(busy).rejects.toBeInstanceOf(BusyError);
      await expect(busy).rejects.toThrow(/^busy: umount \/media\/me\/BOOT failed: umount: failed; close the programs using it \(fuser -vm \/media\/me\/BOOT\)/);
      expect(await m.untouched("sdb")).toBe(true);

      // umount "succeeds" but an automounter puts it back: the second look refuses.
      const err = await refused(flashImage(img.image, m.options({ unmount: true, run: recorder() })));
      expect(err.message).toMatch(/refusing .*sdb after unmounting: mounted at \/media\/me\/BOOT/);
      expect(await m.untouched("sdb")).toBe(true);
    } finally {
      await m.fake.remove();
    }
  });

  it("says an interrupted write leaves part of the image on the card", async () => {
    const m = await machine(oneCard());
    try {
      const ac = new AbortController();
      const progress = { update: (_l: string, done: number) => void (done > 0 && ac.abort()), finish: () => {} };
      const p = flashImage(img.image, m.options({ signal: ac.signal, progress }));
      await expect(p).rejects.toThrow(/^io: interrupted: .*sdb holds part of the image; flash it again before use$/);
      expect(await m.untouched("sdb")).toBe(false);
    } finally {
      await m.fake.remove();
    }
  });

  it("refuses a partition named as the device", async () => {
    const m = await machine(oneCard());
    try {
      expect((await refused(flashImage(img.image, m.options({ device: "/dev/sdb1" })))).message).toMatch(/sdb1 is a partition: flash the whole disk, --device .*sdb/);
    } finally {
      await m.fake.remove();
    }
  });

  it("refuses a laptop's internal disk, even when it is the only disk", async () => {
    const m = await machine({ ...laptop(), disks: laptop().disks.filter((d) => d.name !== "sdb") });
    try {
      expect((await refused(flashImage(img.image, m.options()))).message).toMatch(/no disk can be flashed/);
    } finally {
      await m.fake.remove();
    }
  });
});

describe("flashImage() with --target-file", () => {
  it("writes a new file and reads it back, without touching any disk or command", async () => {
    const target = join(dir, "out", "card.img");
    await mkdir(join(dir, "out"), { recursive: true });
    const run = recorder();
    const r = await flashImage(img.image, { pubKeyFile: img.pub, targetFile: target, run, log: () => {} });
    expect(r).toMatchObject({ target, sha256: img.sha256, partitionsReread: false });
    expect(Buffer.compare(await readFile(target), imageBytes)).toBe(0);
    expect(run.calls).toEqual([]);
  });

  it("asks before overwriting an existing file, and refuses without --yes off a terminal", async () => {
    const target = join(dir, "existing.img");
    await writeFile(target, "keep me");
    expect((await refused(flashImage(img.image, { pubKeyFile: img.pub, targetFile: target, log: () => {} }))).message).toMatch(/pass --yes/);
    expect(await readFile(target, "utf8")).toBe("keep me");
    await flashImage(img.image, { pubKeyFile: img.pub, targetFile: target, yes: true, log: () => {} });
    expect((await stat(target)).size).toBe(img.size);
  });

  it("refuses a directory, the image itself, and --device with --target-file", async () => {
    const opts = { pubKeyFile: img.pub, yes: true, log: () => {} };
    expect((await refused(flashImage(img.image, { ...opts, targetFile: dir }))).message).toMatch(/is not a plain file/);
    expect((await refused(flashImage(img.image, { ...opts, targetFile: img.image }))).message).toMatch(/is the image itself/);
    expect((await refused(flashImage(img.image, { ...opts, targetFile: join(dir, "x.img"), device: "sdb" }))).message).toMatch(/exclude each other/);
  });
});
