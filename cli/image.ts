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
import { join, resolve } from "node:path";
import { loadBoard, packageRoot } from "../boards/index.ts";
import { buildBoardImage, verifyImage } from "../flash/index.ts";
import { fetchArtefacts } from "../rootfs/index.ts";
import { extraFiles, required, str, UsageError, type Parsed } from "./args.ts";
import { defaultQueenPub, defaultReleaseKey, defaultReleasePub, ensureDefaultKey } from "./paths.ts";
import { isNote, progressOf } from "./progress.ts";
import { imageInputsOf, projectOf } from "./project.ts";

interface Io {
  readonly out: (text: string | Uint8Array) => void;
  readonly err: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

/** A default key pair, made on first use, with a note on stderr. */


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
  // In a project folder (or with --project DIR): its workers, files, board, keys and policy.
  const project = projectOf(p);
  const fromProject = project ? imageInputsOf(project) : undefined;
  const out = resolve(required(p, "out", undefined, "the disk image to write, e.g. --out cohesix.img"));
  const board = loadBoard(str(p, "board") ?? project?.board ?? "aarch64-virt");
  const policy = str(p, "policy") ?? project?.nineDoor.policy;
  if (policy !== undefined && policy !== "open" && policy !== "signed-ctl") throw new UsageError("--policy must be open or signed-ctl");
  const dataText = str(p, "data-mb");
  const dataMb = dataText === undefined ? undefined : Number(dataText);
  if (dataMb !== undefined && (!Number.isSafeInteger(dataMb) || dataMb < 8)) throw new UsageError("--data-mb must be a whole number of MiB, at least 8");
  const keyGiven = str(p, "key") ?? project?.releaseKey;
  const releaseKey = keyGiven !== undefined ? resolve(keyGiven) : await ensureDefaultKey("release", defaultReleaseKey(io.env), io.env, io.err);
  const queenGiven = str(p, "queen-pub") ?? project?.queenPub;
  const queenPub = queenGiven !== undefined ? resolve(queenGiven) : await ensureDefaultKey("queen", defaultQueenPub(io.env), io.env, io.err);
  const dir = resolve(str(p, "dir") ?? join(project?.dir ?? ".", ".cohesix"));
  const from = str(p, "from");
  const started = Date.now();
  // Steps on a terminal's status line only; notes (what the image carries) and the summary always.
  const progress = progressOf(io);
  try {
    const artefacts = await fetchArtefacts(board, {
      env: io.env,
      offline: p.values.offline === true,
      onProgress: (line) => progress.step(line),
      ...(from === undefined ? {} : { from: resolve(from) }),
    });
    const append = ((p.values.append as string[] | undefined) ?? []).join(" ");
    const built = await buildBoardImage(out, {
      board,
      artefacts,
      queenPub,
      releaseKey,
      root: packageRoot(),
      workDir: join(dir, "disk", board.name),
      cacheDir: join(dir, "cache"),
      extra: [...(fromProject?.extra ?? []), ...extraFiles(p)],
      ...(fromProject ? { programs: fromProject.programs } : {}),
      ...(policy ? { policy } : {}),
      ...(dataMb !== undefined ? { dataMb } : {}),
      ...(append ? { append } : {}),
      ...(p.values.ab === true ? { ab: true } : {}),
      say: (line) => (isNote(line) ? progress.note(`image: ${line}`) : progress.step(`image: ${line}`)),
    });
    progress.note(`image: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const m = built.manifest;
    io.out(`${built.image}\n${built.manifestPath}\nsha256 ${m.image.sha256}\nboot manifest ${m.bootManifest}\nsigned by release key ${m.keyId}\n`);
  } finally {
    progress.end();
  }
}

/** `image verify FILE [--pub FILE]`: exit 0 and a summary, or the refusal. */
export async function verify(p: Parsed, io: Io): Promise<void> {
  const file = resolve(p.positionals[0]!);
  const pubKeyFile = resolve(str(p, "pub") ?? defaultReleasePub(io.env));
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
