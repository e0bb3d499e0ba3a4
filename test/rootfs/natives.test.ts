/**
 * Native addons in the image (rootfs/natives.ts): which pinned packages a
 * bundle needs, the version check against the installed loader, and their
 * layout under node_modules. (Fetching them: artefacts.test.ts.)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadBoard } from "../../boards/index.ts";
import { InvalidError } from "../../nine-door/index.ts";
import { checkNativeVersions, nativeFiles, nativesFor, packageOfInput } from "../../rootfs/index.ts";
import { packageRoot } from "../../boards/index.ts";

const scratch = mkdtempSync(join(tmpdir(), "cohesix-natives-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const board = loadBoard("aarch64-virt");

describe("native packages", () => {
  it("packageOfInput() names the npm package of a bundled file, scoped or not, and nothing for the project's own files", () => {
    expect(packageOfInput("node_modules/sharp/lib/index.js")).toBe("sharp");
    expect(packageOfInput("node_modules/@img/colour/index.cjs")).toBe("@img/colour");
    expect(packageOfInput("node_modules/a/node_modules/semver/index.js")).toBe("semver");
    expect(packageOfInput("node_modules\\detect-libc\\lib\\detect-libc.js")).toBe("detect-libc");
    expect(packageOfInput("workers/inference/main.ts")).toBeUndefined();
    expect(packageOfInput("node_modules/@img")).toBeUndefined();
    expect(packageOfInput("node_modules/")).toBeUndefined();
  });

  it("nativesFor() picks the board's pins for the packages in a bundle, and none otherwise", () => {
    expect(nativesFor(board.artefacts.natives, ["detect-libc", "sharp", "semver"]).map((p) => p.package)).toEqual(["@img/sharp-linux-arm64", "@img/sharp-libvips-linux-arm64"]);
    expect(nativesFor(board.artefacts.natives, ["msgpackr", "execa"])).toEqual([]);
    expect(nativesFor([], ["sharp"])).toEqual([]);
  });

  it("the board's pins are the versions the installed sharp asks for", () => {
    expect(() => checkNativeVersions(board.artefacts.natives, { root: packageRoot() })).not.toThrow();
  });

  it("checkNativeVersions() refuses a pin the installed loader does not want, and says how to update it", () => {
    const root = join(scratch, "root");
    mkdirSync(join(root, "node_modules", "sharp"), { recursive: true });
    writeFileSync(join(root, "node_modules", "sharp", "package.json"), JSON.stringify({ name: "sharp", version: "0.35.0", optionalDependencies: { "@img/sharp-linux-arm64": "0.35.0" } }));
    const pin = { package: "@img/sharp-linux-arm64", version: "0.34.5", for: "sharp" };
    expect(() => checkNativeVersions([pin], { root, boardFile: "/b/board.json" })).toThrow(InvalidError);
    expect(() => checkNativeVersions([pin], { root, boardFile: "/b/board.json" })).toThrow(
      /board pins @img\/sharp-linux-arm64@0\.34\.5 but the installed sharp 0\.35\.0 wants 0\.35\.0: update the pin in \/b\/board\.json .*npm view @img\/sharp-linux-arm64@0\.35\.0 dist\.integrity/,
    );
    // a loader that does not name the addon, or is not installed, is not checked
    expect(() => checkNativeVersions([{ ...pin, package: "@img/other" }], { root })).not.toThrow();
    expect(() => checkNativeVersions([{ ...pin, for: "absent" }], { root })).not.toThrow();
  });

  it("nativeFiles() lays packages out under node_modules/<name>/, sorted, shared objects executable", async () => {
    const dir = join(scratch, "pkg");
    mkdirSync(join(dir, "lib", "sub"), { recursive: true });
    writeFileSync(join(dir, "package.json"), "{}");
    writeFileSync(join(dir, "lib", "addon.node"), "elf");
    writeFileSync(join(dir, "lib", "libx.so.8.17.3"), "elf");
    writeFileSync(join(dir, "lib", "sub", "index.js"), "module.exports = 1;");
    const files = await nativeFiles([{ pin: { package: "@img/test-linux-arm64" }, dir }]);
    expect(files.map((f) => [f.path, f.mode])).toEqual([
      ["node_modules/@img/test-linux-arm64/lib/addon.node", 0o755],
      ["node_modules/@img/test-linux-arm64/lib/libx.so.8.17.3", 0o755],
      ["node_modules/@img/test-linux-arm64/lib/sub/index.js", 0o644],
      ["node_modules/@img/test-linux-arm64/package.json", 0o644],
    ]);
    expect(new TextDecoder().decode(files[0]!.data)).toBe("elf");
  });
});
