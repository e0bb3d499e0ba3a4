import sharp from "sharp";
import { readFile } from "node:fs/promises";
import { describe, expect, test } from "vitest";
import { IMAGENET_MEAN, IMAGENET_STD, preprocess } from "../../workers/inference/preprocess.ts";

const SAMPLE = new URL("../../workers/inference/sample.png", import.meta.url);

describe("inference preprocessing", () => {
  test("the shipped sample becomes a [1,3,128,128] float32 tensor, deterministic", async () => {
    const png = await readFile(SAMPLE);
    const a = await preprocess(png, { size: 128 });
    const b = await preprocess(png, { size: 128 });
    expect(a.shape).toEqual([1, 3, 128, 128]);
    expect(a.data).toBeInstanceOf(Float32Array);
    expect(a.bytes.length).toBe(3 * 128 * 128 * 4);
    expect(a.sha256).toBe(b.sha256);
  });

  test("channels are planar R, G, B and normalised with the ImageNet mean and deviation", async () => {
    // A solid colour: every value of plane c is (v_c/255 − mean_c) / std_c.
    const png = await sharp({ create: { width: 10, height: 6, channels: 4, background: { r: 255, g: 128, b: 0, alpha: 1 } } }).png().toBuffer();
    const t = await preprocess(png, { size: 4 });
    const plane = 16;
    const want = [255, 128, 0].map((v, c) => (v / 255 - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!);
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < plane; p++) expect(t.data[c * plane + p]).toBeCloseTo(want[c]!, 4);
    }
  });
});
