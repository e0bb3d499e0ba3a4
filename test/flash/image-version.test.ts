/**
 * `cohesix image --version V` (stand-in artefacts, as in ab-image.test.ts):
 * the version goes into each slot's boot manifest, the image's boot
 * manifest and the detached image manifest, all still verifying; an image
 * built without one has none, which the appliance reads as 0.0.0.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadBoard } from "../../boards/index.ts";
import { buildBoardImage, loadDiskSpec, readFat, verifyImage, type BuiltBoardImage } from "../../flash/index.ts";
import { checkDocumentSignature, manifestVersion, parseBootManifest, writeKeyPair } from "../../root-task/index.ts";
import { standInArtefacts } from "../rootfs/fixtures.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "cohesix-image-version-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const board = loadBoard("aarch64-virt");
const artefacts = standInArtefacts(join(work, "artefacts"), board, { moduleFolder: () => "fs", extraModules: loadDiskSpec(board).modules });
let keys: { release: string; releasePub: Uint8Array; releasePubFile: string; queenPub: string };
let built: BuiltBoardImage;

beforeAll(async () => {
  const release = await writeKeyPair(join(work, "keys"), { name: "release" });
  const queen = await writeKeyPair(join(work, "keys"), { name: "queen" });
  keys = { release: release.privatePath, releasePub: release.publicKey, releasePubFile: release.publicPath, queenPub: queen.publicPath };
  built = await buildBoardImage(join(work, "v", "cohesix.img"), {
    board,
    artefacts,
    queenPub: keys.queenPub,
    releaseKey: keys.release,
    root,
    workDir: join(work, "v", "work"),
    cacheDir: join(work, "cache"),
    strip: false,
    dataMb: 8,
    epoch: 1_700_000_000,
    ab: true,
    version: "2.4.1",
  });
}, 120_000);

describe("an image built with a version", () => {
  const fat = async (path: string) => Buffer.from(await readFat(built.image, built.table.partitions[0]!.start, path)).toString("utf8");

  it("names it in both slots' signed manifests, which still verify", async () => {
    for (const slot of ["a", "b"]) {
      const m = parseBootManifest(await fat(`/${slot}/manifest.json`), `/${slot}/manifest.json`);
      expect(manifestVersion(m)).toBe("2.4.1");
      expect(checkDocumentSignature(m as never, keys.releasePub)).toBeUndefined();
    }
  });

  it("names it in the image's boot manifest and in the detached image manifest, and the image verifies", async () => {
    expect(parseBootManifest(await fat("/cohesix/manifest.json"), "boot").version).toBe("2.4.1");
    expect(built.manifest.version).toBe("2.4.1");
    expect(JSON.parse(readFileSync(built.manifestPath, "utf8")).version).toBe("2.4.1");
    const verified = await verifyImage(built.image, { pubKeyFile: keys.releasePubFile });
    expect(verified.version).toBe("2.4.1");
  });

  it("refuses a malformed version before building a disk", async () => {
    await expect(
      buildBoardImage(join(work, "bad", "cohesix.img"), { board, artefacts, queenPub: keys.queenPub, releaseKey: keys.release, root, workDir: join(work, "bad", "work"), cacheDir: join(work, "cache"), strip: false, dataMb: 8, version: "v2" }),
    ).rejects.toThrow(/^invalid: disk image: version "v2" must be dotted whole numbers/);
  }, 120_000);
});
