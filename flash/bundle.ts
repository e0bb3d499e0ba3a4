/**
 * A board's update bundle: the same slot build a disk image carries
 * ({@link buildSlot}), written as a signed bundle (`update/`'s format)
 * instead of a disk, for `cohesix update` to stream into an appliance's
 * inactive slot.
 * @module
 */
import { writeBundle, type BundleHeader } from "../update/index.ts";
import { buildEpoch } from "./disk.ts";
import { buildSlot, type BuildSlotOptions, type BuiltSlot } from "./image.ts";

/** Options of {@link buildBoardBundle}. */
export interface BuildBoardBundleOptions extends BuildSlotOptions {
  /** The release version of the build, e.g. `1.2.0`. */
  readonly version: string;
  /** Bytes per verified chunk; default 1 MiB. */
  readonly chunkSize?: number;
  /** Seconds since 1970 for the bundle's `created`; default SOURCE_DATE_EPOCH. */
  readonly epoch?: number;
}

/** What {@link buildBoardBundle} made. */
export interface BuiltBoardBundle {
  readonly bundle: string;
  readonly header: BundleHeader;
  readonly slot: BuiltSlot;
}

/**
 * Builds a slot for the board and writes it as a bundle at `out`, signed
 * with the release key (the header and the slot manifest inside).
 *
 * @example
 * ```ts
 * const built = await buildBoardBundle("cohesix-1.2.0.bundle", { board, artefacts, queenPub, releaseKey: "release.key", root: packageRoot(), workDir: ".cohesix/disk/aarch64-virt", version: "1.2.0" });
 * built.header.chunks.length; // one per MiB
 * ```
 */
export async function buildBoardBundle(out: string, options: BuildBoardBundleOptions): Promise<BuiltBoardBundle> {
  const say = options.say ?? (() => {});
  // A bundle is written into an A/B image's slot: its init loads the watchdog driver.
  const slot = await buildSlot({ ...options, abSlot: true });
  const header = await writeBundle({
    board: options.board.name,
    version: options.version,
    kernel: slot.kernel,
    initramfs: slot.initrd,
    key: slot.releaseKey,
    out,
    epoch: options.epoch ?? buildEpoch(),
    ...(options.chunkSize !== undefined ? { chunkSize: options.chunkSize } : {}),
  });
  const size = header.payloads.reduce((n, p) => n + p.size, 0);
  say(`bundle ${out}: version ${header.version}, ${(size / (1 << 20)).toFixed(1)} MiB in ${header.chunks.length} chunks`);
  return { bundle: out, header, slot };
}
