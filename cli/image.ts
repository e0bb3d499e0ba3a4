/**
 * `cohesix image`: builds a board's flashable disk image and its signed
 * manifest; `cohesix image verify` checks an image against its manifest.
 *
 * Files: the image and `IMAGE.manifest.json` where `--out` says; the
 * initramfs, kernel and extlinux.conf of the build under
 * `<--dir>/disk/<board>/` (default `.cohesix`), the runtime cache under
 * `<--dir>/cache/`. Keys: `--key` (default ~/.config/cohesix/release.key,
 * made with its public half on first use) signs; `--pub` (default
 * ~/.config/cohesix/release.pub) checks.
 * @module
 */
import { open } from "node:fs/promises";
import { join, resolve } from "node:path";
import { loadBoard, packageRoot } from "../boards/index.ts";
import { buildBoardImage, verifyImage, type BuildSlotOptions } from "../flash/index.ts";
import type { ProjectConfig } from "../project/index.ts";
import { errorOfClass, NineError } from "../nine-door/index.ts";
import { readPublicKey, VERSION_PATTERN } from "../root-task/index.ts";
import { BUNDLE_MAGIC, verifyBundleFile } from "../update/index.ts";
import { fetchArtefacts } from "../rootfs/index.ts";
import { extraFiles, required, str, UsageError, type Parsed } from "./args.ts";
import { defaultQueenPub, defaultReleaseKey, defaultReleasePub, ensureDefaultKey } from "./paths.ts";
import { isNote, progressOf, type Progress } from "./progress.ts";
import { imageInputsOf, projectOf } from "./project.ts";

interface Io {
  readonly out: (text: string | Uint8Array) => void;
  readonly err: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

/** What `image` and `bundle` build a slot from: the board, keys, the project's workers and files, the fetched artefacts. */
export interface SlotInputs {
  readonly options: BuildSlotOptions;
  /** The project the command runs in, if any. */
  readonly project: ProjectConfig | undefined;
  /** `--dir` (default `.cohesix` in the project or current folder). */
  readonly dir: string;
}

/**
 * Resolves a slot build's inputs from the command line and the project
 * (board, policy, keys made on first use, extra files, workers) and
 * fetches the board's artefacts; shared by `image` and `bundle`.
 *
 * @example
 * ```ts
 * const { options } = await slotInputsOf(p, io, progress);
 * await buildBoardImage("cohesix.img", options);
 * ```
 */
export async function slotInputsOf(p: Parsed, io: Io, progress: Progress): Promise<SlotInputs> {
  // In a project folder (or with --project DIR): its workers, files, board, keys and policy.
  const project = projectOf(p);
  const fromProject = project ? imageInputsOf(project) : undefined;
  const board = loadBoard(str(p, "board") ?? project?.board ?? "aarch64-virt");
  const policy = str(p, "policy") ?? project?.nineDoor.policy;
  if (policy !== undefined && policy !== "open" && policy !== "signed-ctl") throw new UsageError("--policy must be open or signed-ctl");
  const keyGiven = str(p, "key") ?? project?.releaseKey;
  const releaseKey = keyGiven !== undefined ? resolve(keyGiven) : await ensureDefaultKey("release", defaultReleaseKey(io.env), io.env, io.err);
  const queenGiven = str(p, "queen-pub") ?? project?.queenPub;
  const queenPub = queenGiven !== undefined ? resolve(queenGiven) : await ensureDefaultKey("queen", defaultQueenPub(io.env), io.env, io.err);
  const dir = resolve(str(p, "dir") ?? join(project?.dir ?? ".", ".cohesix"));
  const from = str(p, "from");
  const artefacts = await fetchArtefacts(board, {
    env: io.env,
    offline: p.values.offline === true,
    onProgress: (line) => progress.step(line),
    ...(from === undefined ? {} : { from: resolve(from) }),
  });
  const append = ((p.values.append as string[] | undefined) ?? []).join(" ");
  return {
    project,
    dir,
    options: {
      board,
      artefacts,
      queenPub,
      releaseKey,
      root: packageRoot(),
      workDir: join(dir, "disk", board.name),
      cacheDir: join(dir, "cache"),
      extra: [...(fromProject?.extra ?? []), ...extraFiles(p)],
      ...(fromProject ? { programs: fromProject.programs } : {}),
      ...(fromProject?.health ? { health: fromProject.health } : {}),
      ...(fromProject?.fleet ? { fleet: fromProject.fleet } : {}),
      ...(policy ? { policy } : {}),
      ...(append ? { append } : {}),
    },
  };
}

/** `--version V`, checked; undefined when not given. */
export function versionOption(p: Parsed): string | undefined {
  const v = str(p, "version");
  if (v !== undefined && !VERSION_PATTERN.test(v)) throw new UsageError(`--version ${JSON.stringify(v)} must be dotted whole numbers such as 1.2.0 (one to four parts)`);
  return v;
}

/**
 * `image --board B --out FILE [--key FILE] …` or `image verify FILE [--pub FILE]`.
 *
 * @example
 * ```ts
 * await main(["image", "--board", "aarch64-virt", "--out", "cohesix.img"], io); // "cohesix.img\ncohesix.img.manifest.json\n…"
 * await main(["image", "verify", "cohesix.img", "--pub", "release.pub"], io); // "ok cohesix.img …"
 * ```
 */
export async function image(p: Parsed, io: Io): Promise<void> {
  const out = resolve(required(p, "out", undefined, "the disk image to write, e.g. --out cohesix.img"));
  const dataText = str(p, "data-mb");
  const dataMb = dataText === undefined ? undefined : Number(dataText);
  if (dataMb !== undefined && (!Number.isSafeInteger(dataMb) || dataMb < 8)) throw new UsageError("--data-mb must be a whole number of MiB, at least 8");
  const version = versionOption(p);
  const started = Date.now();
  // Steps on a terminal's status line only; notes (what the image carries) and the summary always.
  const progress = progressOf(io);
  try {
    const { options } = await slotInputsOf(p, io, progress);
    const built = await buildBoardImage(out, {
      ...options,
      ...(dataMb !== undefined ? { dataMb } : {}),
      ...(p.values.ab === true ? { ab: true } : {}),
      ...(version !== undefined ? { version } : {}),
      say: (line) => (isNote(line) ? progress.note(`image: ${line}`) : progress.step(`image: ${line}`)),
    });
    progress.note(`image: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const m = built.manifest;
    io.out(`${built.image}\n${built.manifestPath}\nsha256 ${m.image.sha256}\nboot manifest ${m.bootManifest}\nsigned by release key ${m.keyId}\n`);
  } finally {
    progress.end();
  }
}

/** `image verify FILE [--pub FILE]`: exit 0 and a summary, or the refusal. A bundle (by its magic) is checked as a bundle. */
export async function verify(p: Parsed, io: Io): Promise<void> {
  const file = resolve(p.positionals[0]!);
  const pubKeyFile = resolve(str(p, "pub") ?? defaultReleasePub(io.env));
  if (await isBundleFile(file)) {
    await verifyBundle(file, pubKeyFile, p, io);
    return;
  }
  const manifestPath = str(p, "manifest");
  const m = await verifyImage(file, { pubKeyFile, ...(manifestPath !== undefined ? { manifestPath: resolve(manifestPath) } : {}) });
  if (p.values.json === true) {
    io.out(`${JSON.stringify({ ok: true, file, size: m.image.size, sha256: m.image.sha256, board: m.board, keyId: m.keyId, bootManifest: m.bootManifest, artefacts: m.artefacts })}\n`);
    return;
  }
  io.out(
    `ok ${file}: ${m.image.size} bytes, sha256 ${m.image.sha256}, board ${m.board}, signed by release key ${m.keyId}\n` +
      `boot manifest ${m.bootManifest} (shown in /proc/boot as manifest=)\n` +
      m.artefacts.map((a) => `  ${a.path} ${a.size} ${a.sha256}\n`).join(""),
  );
}

/** Whether `file` starts with the bundle magic (a missing file is left to the image check to report). */
async function isBundleFile(file: string): Promise<boolean> {
  const handle = await open(file, "r").catch(() => undefined);
  if (!handle) return false;
  try {
    const head = Buffer.alloc(BUNDLE_MAGIC.length);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    return bytesRead === head.length && head.toString("latin1") === BUNDLE_MAGIC;
  } finally {
    await handle.close();
  }
}

async function verifyBundle(file: string, pubKeyFile: string, p: Parsed, io: Io): Promise<void> {
  const releasePub = await readPublicKey(pubKeyFile);
  const checked = await verifyBundleFile(file, { releasePub, ...(str(p, "board") !== undefined ? { board: str(p, "board")! } : {}) }).catch((err: unknown) => {
    // The same class, the file named: "invalid: FILE: bundle chunk 3 …".
    throw err instanceof NineError ? errorOfClass(err.errorClass, `${file}: ${err.detail}`) : err;
  });
  const h = checked.header;
  if (p.values.json === true) {
    io.out(`${JSON.stringify({ ok: true, kind: "bundle", file, size: checked.size, sha256: checked.sha256, board: h.board, version: h.version, created: h.created, keyId: h.keyId, chunkSize: h.chunkSize, chunks: h.chunks.length, payloads: h.payloads })}\n`);
    return;
  }
  io.out(
    `ok ${file}: bundle for board ${h.board}, version ${h.version}, ${checked.size} bytes, sha256 ${checked.sha256}, signed by release key ${h.keyId}\n` +
      `${h.chunks.length} chunks of ${h.chunkSize} bytes, created ${h.created}\n` +
      h.payloads.map((a) => `  ${a.name} ${a.size} ${a.sha256}\n`).join(""),
  );
}
