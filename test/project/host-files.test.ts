import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { parseProject, placeForHost } from "../../project/index.ts";
import { appPath } from "../../workers/index.ts";

const dir = mkdtempSync(join(tmpdir(), "cohesix-host-files-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function project(files: Record<string, string>, placed: unknown[]) {
  const root = mkdtempSync(join(dir, "p-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return parseProject({ board: "host", workers: [], files: placed }, { dir: root, boards: [] });
}

describe("a project's files on the host board", () => {
  test("placeForHost puts each file at its guest path under .cohesix/host/root, with its mode", async () => {
    const p = project({ "settings.json": "{}\n", "bin/run.sh": "#!/bin/sh\n" }, [
      { src: "settings.json", dest: "/etc/app/settings.json" },
      { src: "bin/run.sh", dest: "/usr/local/bin/run.sh", mode: 0o750 },
    ]);
    const root = await placeForHost(p);
    expect(root).toBe(join(p.dir, ".cohesix", "host", "root"));
    expect(readFileSync(join(root, "etc", "app", "settings.json"), "utf8")).toBe("{}\n");
    expect(statSync(join(root, "usr", "local", "bin", "run.sh")).mode & 0o777).toBe(0o750);
  });

  test("placeForHost starts afresh: a file no longer listed is gone", async () => {
    const p = project({ "a.txt": "a" }, [{ src: "a.txt", dest: "/etc/a.txt" }]);
    const root = await placeForHost(p);
    writeFileSync(join(root, "etc", "stale.txt"), "old");
    await placeForHost(p);
    expect(existsSync(join(root, "etc", "stale.txt"))).toBe(false);
    expect(existsSync(join(root, "etc", "a.txt"))).toBe(true);
  });

  test("placeForHost refuses a guest path that climbs out of the root", async () => {
    const p = project({ "a.txt": "a" }, [{ src: "a.txt", dest: "/../../escaped.txt" }]);
    await expect(placeForHost(p)).rejects.toThrow(/^invalid: files: \/\.\.\/\.\.\/escaped\.txt leaves the appliance's file system/);
    expect(existsSync(join(p.dir, "..", "escaped.txt"))).toBe(false);
  });

  test("appPath is the guest path in the image and under COHESIX_ROOT on the host board", () => {
    expect(appPath("/etc/app/settings.json", {})).toBe("/etc/app/settings.json");
    expect(appPath("/etc/app/settings.json", { COHESIX_ROOT: "/" })).toBe("/etc/app/settings.json");
    expect(appPath("/etc/app/settings.json", { COHESIX_ROOT: "/home/me/app/.cohesix/host/root/" })).toBe("/home/me/app/.cohesix/host/root/etc/app/settings.json");
    expect(() => appPath("etc/app/settings.json", {})).toThrow(/^invalid: appPath: "etc\/app\/settings.json" must be an absolute guest path/);
  });
});
