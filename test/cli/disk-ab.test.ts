/**
 * `cohesix boot --disk FILE` knows an A/B image by the manifest beside it
 * (it lists `/boot.scr`), so that image boots without `-no-reboot` and with
 * the watchdog; any other image, or one without its manifest, boots as a
 * plain disk.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAbImage } from "../../cli/vm.ts";

let dir = "";
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-disk-ab-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function imageWith(name: string, paths: string[] | undefined): Promise<string> {
  const image = join(dir, name);
  await writeFile(image, "");
  if (paths) await writeFile(`${image}.manifest.json`, JSON.stringify({ artefacts: paths.map((path) => ({ path, size: 1, sha256: "0".repeat(64) })) }));
  return image;
}

describe("isAbImage", () => {
  it("says yes for an image whose manifest lists /boot.scr", async () => {
    expect(isAbImage(await imageWith("ab.img", ["/a/Image", "/boot.scr", "/state.env"]))).toBe(true);
  });

  it("says no for an extlinux image, an image without its manifest and a manifest that is not JSON", async () => {
    expect(isAbImage(await imageWith("plain.img", ["/Image", "/extlinux/extlinux.conf"]))).toBe(false);
    expect(isAbImage(await imageWith("bare.img", undefined))).toBe(false);
    const broken = await imageWith("broken.img", undefined);
    await writeFile(`${broken}.manifest.json`, "{ not json");
    expect(isAbImage(broken)).toBe(false);
  });
});
