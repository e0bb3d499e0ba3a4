/**
 * Image → tensor for the inference worker: decode with sharp, resize to a
 * square (cover, centre), drop alpha, and lay the RGB pixels out as a
 * float32 CHW tensor normalised with the ImageNet mean and deviation.
 * @module
 */
import { createHash } from "node:crypto";
import sharp from "sharp";

/** Per-channel mean and standard deviation (ImageNet, RGB order, 0..1 scale). */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** A preprocessed image. */
export interface Tensor {
  /** `[1, 3, size, size]`: batch, channels (R, G, B), height, width. */
  readonly shape: readonly [1, 3, number, number];
  readonly data: Float32Array;
  /** The tensor's bytes as a Uint8Array view (little-endian float32). */
  readonly bytes: Uint8Array;
  /** `sha256:<hex>` of `bytes`. */
  readonly sha256: string;
  /** Mean of each channel after normalisation. */
  readonly channelMean: readonly [number, number, number];
}

/**
 * Decodes `image` (PNG, JPEG, WebP…) and makes the normalised CHW tensor.
 *
 * @example
 * ```ts
 * const t = await preprocess(await readFile("sample.png"), { size: 128 });
 * t.shape; // [1, 3, 128, 128]
 * ```
 */
export async function preprocess(image: Uint8Array, options: { size: number }): Promise<Tensor> {
  const size = options.size;
  const { data, info } = await sharp(image)
    .resize(size, size, { fit: "cover", position: "centre", kernel: "lanczos3" })
    .removeAlpha()
    .toColourspace("srgb")
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== size || info.height !== size) {
    throw new Error(`preprocess: expected ${size}×${size}×3 pixels, sharp gave ${info.width}×${info.height}×${info.channels}`);
  }
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  const sums = [0, 0, 0];
  // HWC uint8 → CHW float32, (x/255 − mean) / std.
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const v = (data[p * 3 + c]! / 255 - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!;
      out[c * plane + p] = v;
      sums[c]! += v;
    }
  }
  const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  return {
    shape: [1, 3, size, size],
    data: out,
    bytes,
    sha256: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
    channelMean: [round(sums[0]! / plane), round(sums[1]! / plane), round(sums[2]! / plane)],
  };
}

/** Where the preprocessing ran, as the telemetry reports it. */
export interface PreprocessRuntime {
  /** `process.platform`-`process.arch`, e.g. `linux-arm64` inside the aarch64 guest. */
  readonly platform: string;
  readonly node: string;
  /** sharp's version and the libvips it loaded. */
  readonly sharp: string;
  readonly vips: string;
}

/**
 * The platform and the sharp/libvips build in use, so a result line shows
 * where its tensor was made (the guest's `linux-arm64` natives, or the host's).
 *
 * @example
 * ```ts
 * preprocessRuntime(); // { platform: "linux-arm64", node: "24.22.0", sharp: "0.34.5", vips: "8.17.3" }
 * ```
 */
export function preprocessRuntime(): PreprocessRuntime {
  const v = sharp.versions as { sharp?: string; vips?: string };
  return { platform: `${process.platform}-${process.arch}`, node: process.versions.node, sharp: v.sharp ?? "unknown", vips: v.vips ?? "unknown" };
}

function round(n: number): number {
  return Math.round(n * 1e4) / 1e4;
}
