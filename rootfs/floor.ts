/**
 * The floor image: the board's runtime part — the same kernel, Node, its
 * libraries, busybox and modules, byte for byte the cached part the
 * appliance image starts with ({@link runtimePart}) — and, instead of the
 * appliance, one Node script that prints `READY floor`. It is what the
 * boot benchmark measures the appliance image against: boot time and size
 * over the floor are what Cohesix itself costs.
 * @module
 */
import { copyFile, mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { checkSize, compress, type Compression } from "./compress.ts";
import type { CpioEntry } from "./cpio-entry.ts";
import { writeCpio } from "./cpio.ts";
import { runtimePart, type ImageArtefacts, type ImageBoard } from "./image.ts";
import { FLOOR_READY, floorInitScript } from "./init.ts";

/** Where the floor's script lives in the image. */
const FLOOR_SCRIPT = "/etc/cohesix/floor.mjs";

/** Options of {@link buildFloorImage}. */
export interface FloorImageOptions {
  readonly board: ImageBoard;
  readonly artefacts: ImageArtefacts;
  /** Output folder: the initramfs and `Image`. */
  readonly outDir: string;
  /** The runtime part's cache; share the appliance build's (`<dir>/cache`) to reuse its bytes. Default `<outDir>/../cache`. */
  readonly cacheDir?: string;
  /** Default `gzip`, as the appliance image. */
  readonly compression?: Compression;
  /** As in `buildImage`. */
  readonly strip?: string | false;
  /** Progress lines. */
  readonly say?: (line: string) => void;
}

/** A built floor image. */
export interface FloorImage {
  readonly initrd: string;
  readonly kernel: string;
  /** The board's kernel command line. */
  readonly cmdline: string;
  /** The console line that says Node ran. */
  readonly ready: string;
  /** Size of the initramfs file. */
  readonly bytes: number;
  /** Size of its archives uncompressed. */
  readonly uncompressedBytes: number;
  /** Size of the runtime part uncompressed. */
  readonly runtimeBytes: number;
}

/**
 * The floor part's entries: `/init` and the READY script.
 *
 * @example
 * ```ts
 * floorEntries().map((e) => e.path); // ["/init", "/etc/cohesix/floor.mjs"]
 * ```
 */
export function floorEntries(): CpioEntry<Uint8Array>[] {
  const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
  return [
    { type: "file", path: "/init", data: utf8(floorInitScript(FLOOR_SCRIPT)), mode: 0o755 },
    { type: "file", path: FLOOR_SCRIPT, data: utf8(`console.log(${JSON.stringify(FLOOR_READY)});\n`), mode: 0o644 },
  ];
}

/**
 * Builds the floor image into `outDir` (`initramfs.cpio.gz` or
 * `initramfs.cpio`, and `Image`).
 *
 * @example
 * ```ts
 * const floor = await buildFloorImage({ board, artefacts, outDir: ".cohesix/floor/aarch64-virt", cacheDir: ".cohesix/cache" });
 * floor.ready; // "READY floor"
 * ```
 */
export async function buildFloorImage(options: FloorImageOptions): Promise<FloorImage> {
  const { board, artefacts, outDir } = options;
  const compression = options.compression ?? "gzip";
  await mkdir(outDir, { recursive: true });
  const runtime = await runtimePart({
    board,
    artefacts,
    cacheDir: options.cacheDir ?? join(outDir, "..", "cache"),
    compression,
    ...(options.strip !== undefined ? { strip: options.strip } : {}),
    ...(options.say ? { say: options.say } : {}),
  });
  const floorRaw = writeCpio(floorEntries());
  const image = Buffer.concat([runtime.data, compress(floorRaw, compression)]);
  checkSize(image, { limit: board.sizeLimitBytes, what: `${board.name} floor initramfs` });
  const initrd = join(outDir, compression === "gzip" ? "initramfs.cpio.gz" : "initramfs.cpio");
  const tmp = `${initrd}.${process.pid}.tmp`;
  await writeFile(tmp, image);
  await rename(tmp, initrd);
  const kernel = join(outDir, "Image");
  await copyFile(artefacts.kernel, kernel);
  return {
    initrd,
    kernel,
    cmdline: board.kernel.cmdline,
    ready: FLOOR_READY,
    bytes: image.byteLength,
    uncompressedBytes: runtime.rawBytes + floorRaw.byteLength,
    runtimeBytes: runtime.rawBytes,
  };
}
