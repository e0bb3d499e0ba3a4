/**
 * `npm run bench -- image`: the flashable disk image of a board.
 *
 * - **Build time** of `buildBoardImage` (what `cohesix image` runs after
 *   fetching): once cold (fresh cache folder: strip Node, write and gzip
 *   the runtime part) and `--runs` times warm (runtime part cached), split
 *   into the initramfs and the disk assembly (signed boot manifest, FAT
 *   through mtools, ext4, sfdisk, hashing, detached manifest).
 * - **Size**: the image file (apparent and allocated: partitions are copied
 *   in without their zero blocks, so the file is sparse), its partitions,
 *   the boot partition's files, and the initramfs for comparison.
 * - **Flash to a file with verification on** (`flashImage` with
 *   `targetFile`, as `cohesix flash --target-file --yes` runs it: the
 *   signed manifest and the image's sha256 checked before writing, then
 *   write, read back and compare): MB/s over the whole command and over the
 *   write alone, against a plain copy of the same file (`fs.copyFile`) and
 *   `verifyImage` alone.
 *
 * Needs the board's artefacts in the cache (`cohesix fetch`), mtools,
 * dosfstools, fdisk, e2fsprogs. Everything goes to a temp folder that is
 * removed at the end (unless `--keep`).
 *
 * @example
 * ```sh
 * npm run bench -- image                  # aarch64-virt, 3 warm runs, 3 flashes
 * npm run bench -- image --runs 5 --tmp /var/tmp
 * ```
 * @module
 */
import { copyFile, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { loadBoard, packageRoot } from "../boards/index.ts";
import { buildBoardImage, flashImage, verifyImage, type BuiltBoardImage } from "../flash/index.ts";
import { writeKeyPair } from "../root-task/index.ts";
import { fetchArtefacts } from "../rootfs/index.ts";
import { load } from "./child.ts";

const USAGE = `usage: npm run bench -- image [OPTIONS]

  --board NAME   board (default aarch64-virt)
  --runs N       warm builds and flashes (default 3)
  --tmp DIR      where the temp folder goes (default the system temp dir)
  --keep         keep the temp folder (prints its path)
`;

const MiB = 1 << 20;
const mb = (bytes: number): string => (bytes / MiB).toFixed(1);
const s = (ms: number): string => (ms / 1000).toFixed(2);
const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};

interface Timed {
  readonly built: BuiltBoardImage;
  readonly totalMs: number;
  readonly initramfsMs: number;
  readonly diskMs: number;
}

/** Runs the benchmark; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: { board: { type: "string" }, runs: { type: "string" }, tmp: { type: "string" }, keep: { type: "boolean" }, help: { type: "boolean" } },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const runs = Number(values.runs ?? "3");
  if (!Number.isInteger(runs) || runs < 1) {
    process.stderr.write(`bench image: --runs must be a positive integer\n${USAGE}`);
    return 2;
  }
  const board = loadBoard(values.board ?? "aarch64-virt");
  const tmp = await mkdtemp(join(values.tmp ?? (await import("node:os")).tmpdir(), "cohesix-bench-image-"));
  try {
    process.stdout.write(`bench image: board ${board.name}, ${runs} warm run(s), load ${load()}\n`);
    const keys = join(tmp, "keys");
    const release = await writeKeyPair(keys, { name: "release" });
    const queen = await writeKeyPair(keys, { name: "queen" });
    const artefacts = await fetchArtefacts(board, { offline: true });
    const cacheDir = join(tmp, "cache");

    const build = async (out: string): Promise<Timed> => {
      const t0 = performance.now();
      let tDisk = t0;
      const built = await buildBoardImage(out, {
        board,
        artefacts,
        queenPub: queen.publicPath,
        releaseKey: release.privatePath,
        root: packageRoot(),
        workDir: join(tmp, "work"),
        cacheDir,
        say: (line) => {
          if (line.startsWith("boot partition:")) tDisk = performance.now();
        },
      });
      const t1 = performance.now();
      return { built, totalMs: t1 - t0, initramfsMs: tDisk - t0, diskMs: t1 - tDisk };
    };

    const image = join(tmp, "cohesix.img");
    const cold = await build(image);
    const warm: Timed[] = [];
    for (let i = 0; i < runs; i++) warm.push(await build(image));
    const last = warm.at(-1)!;
    const line = (label: string, t: Timed): string =>
      `  ${label.padEnd(16)} total ${s(t.totalMs).padStart(6)} s   initramfs ${s(t.initramfsMs).padStart(6)} s   disk assembly ${s(t.diskMs).padStart(6)} s\n`;
    process.stdout.write("\nbuild time (buildBoardImage; artefacts already fetched)\n");
    process.stdout.write(line("cold (no cache)", cold));
    warm.forEach((t, i) => process.stdout.write(line(`warm #${i + 1}`, t)));
    const warmTotal = median(warm.map((t) => t.totalMs));
    const warmDisk = median(warm.map((t) => t.diskMs));
    process.stdout.write(`  median warm: ${s(warmTotal)} s, of which disk assembly ${s(warmDisk)} s (${((warmDisk / warmTotal) * 100).toFixed(0)} %); cold/warm ${(cold.totalMs / warmTotal).toFixed(1)}x\n`);

    const info = await stat(image);
    const m = last.built.manifest;
    const initrd = m.artefacts.find((a) => a.path === "/initrd.gz")!;
    const kernel = m.artefacts.find((a) => a.path === "/Image")!;
    const bootFiles = m.artefacts.reduce((n, a) => n + a.size, 0);
    process.stdout.write("\nimage size\n");
    process.stdout.write(`  image file      ${mb(info.size)} MiB apparent, ${mb(info.blocks * 512)} MiB allocated (sparse)\n`);
    for (const p of m.partitions) process.stdout.write(`  partition ${p.index}     ${p.role.padEnd(5)} ${mb(p.size)} MiB at ${mb(p.start)} MiB\n`);
    process.stdout.write(`  boot files      ${mb(bootFiles)} MiB: Image ${mb(kernel.size)} MiB, initrd.gz ${mb(initrd.size)} MiB, ${m.artefacts.length} files; boot partition ${((bootFiles / m.partitions[0]!.size) * 100).toFixed(0)} % full\n`);
    process.stdout.write(`  image / (kernel + initramfs) = ${(info.size / (kernel.size + initrd.size)).toFixed(2)}x\n`);

    process.stdout.write("\nflash to a file, verification on (flashImage --target-file --yes)\n");
    const pub = release.publicPath;
    const flashes: { totalMs: number; writeMs: number; verifyMs: number; bytes: number }[] = [];
    const copies: number[] = [];
    const verifies: number[] = [];
    for (let i = 0; i < runs; i++) {
      const target = join(tmp, `flashed-${i}.img`);
      const t0 = performance.now();
      const r = await flashImage(image, { pubKeyFile: pub, targetFile: target, yes: true, log: () => {} });
      flashes.push({ totalMs: performance.now() - t0, writeMs: r.writeMs, verifyMs: r.verifyMs, bytes: r.bytes });
      await rm(target, { force: true });
      const t1 = performance.now();
      await copyFile(image, target);
      copies.push(performance.now() - t1);
      await rm(target, { force: true });
      const t2 = performance.now();
      await verifyImage(image, { pubKeyFile: pub });
      verifies.push(performance.now() - t2);
    }
    const rate = (bytes: number, ms: number): string => (bytes / 1e6 / (ms / 1000)).toFixed(0);
    flashes.forEach((f, i) =>
      process.stdout.write(
        `  flash #${i + 1}  ${s(f.totalMs)} s = ${rate(f.bytes, f.totalMs)} MB/s end to end (write ${s(f.writeMs)} s = ${rate(f.bytes, f.writeMs)} MB/s, read back ${s(f.verifyMs)} s); plain copy ${s(copies[i]!)} s; verifyImage ${s(verifies[i]!)} s\n`,
      ),
    );
    const ft = median(flashes.map((f) => f.totalMs));
    const ct = median(copies);
    process.stdout.write(
      `  median: ${rate(info.size, ft)} MB/s end to end with verification; plain copy ${rate(info.size, ct)} MB/s; flash/copy time ${(ft / ct).toFixed(1)}x; manifest check before writing ${s(median(verifies))} s\n`,
    );
    process.stdout.write(`\nload at end ${load()}\n`);
    if (values.keep) process.stdout.write(`kept ${tmp}: ${(await readdir(tmp)).join(" ")}\n`);
    return 0;
  } finally {
    if (!values.keep) await rm(tmp, { recursive: true, force: true });
  }
}
