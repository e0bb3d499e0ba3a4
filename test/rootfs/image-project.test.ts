/**
 * Image assembly with an appliance project's workers (stand-in artefacts, as
 * in image.test.ts): each is bundled with its own npm dependencies to
 * dist/workers/<name>.mjs, the guest config lists it with its role, default
 * budget and restart policy, and the manifest names it; a name that clashes
 * with a built-in worker is refused.
 */
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { loadBoard } from "../../boards/index.ts";
import { buildImage, decompress, readCpio, type CpioEntry, type ImageHealth, type ImageProgram } from "../../rootfs/index.ts";
import { put, standInArtefacts, standInQueenPub } from "./fixtures.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "cohesix-image-project-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const board = loadBoard("aarch64-virt");

// A project: a worker importing the worker API and a small npm package of its own.
const project = join(work, "project");
put(join(project, "node_modules", "shout", "package.json"), JSON.stringify({ name: "shout", version: "1.0.0", main: "index.js" }));
put(join(project, "node_modules", "shout", "index.js"), 'module.exports = (s) => String(s).toUpperCase() + "!SHOUT-MARKER";\n');
symlinkSync(root, join(project, "node_modules", "cohesix"));
put(join(project, "workers", "camera.ts"), 'import shout from "shout";\nimport { runWorker } from "cohesix/worker";\nawait runWorker({ name: "camera", tick: async (_w, n) => ({ frame: n, label: shout("f") }) });\n');

const camera: ImageProgram = { source: join(project, "workers", "camera.ts"), role: "worker-camera", budget: { ticks: 500 }, restart: true };

function build(name: string, programs: Record<string, ImageProgram>, more: { health?: ImageHealth } = {}) {
  return buildImage({
    board,
    artefacts: standInArtefacts(join(work, "artefacts"), board),
    queenPub: standInQueenPub(join(work, "queen.pub")),
    root,
    outDir: join(work, name, "image"),
    cacheDir: join(work, name, "cache"),
    strip: false,
    programs,
    ...more,
  });
}

function entriesOf(initrd: string): Map<string, CpioEntry<Uint8Array>> {
  const raw = decompress(readFileSync(initrd));
  const split = raw.indexOf("TRAILER!!!");
  const second = raw.subarray(raw.indexOf("070701", split));
  return new Map([...readCpio(raw), ...readCpio(second)].map((e) => [e.path, e]));
}

const text = (e: CpioEntry<Uint8Array> | undefined): string => new TextDecoder().decode((e as { data: Uint8Array }).data);

describe("buildImage with a project's workers", () => {
  it("bundles each with its npm dependencies and lists it in the guest config and the manifest", async () => {
    const built = await build("project", { camera });
    const byPath = entriesOf(built.initrd);
    expect(built.manifest.workers).toEqual(["camera", "gpu", "heartbeat"]);
    const bundle = text(byPath.get("opt/cohesix/dist/workers/camera.mjs"));
    expect(bundle).toContain("!SHOUT-MARKER");
    expect(bundle).not.toMatch(/from\s*"(shout|cohesix\/worker)"/);
    const config = JSON.parse(text(byPath.get("etc/cohesix/config.json"))) as { workers: string[]; programs: Record<string, unknown> };
    expect(config.workers).toEqual(["camera", "gpu", "heartbeat"]);
    expect(config.programs).toEqual({ camera: { entry: "dist/workers/camera.mjs", role: "worker-camera", budget: { ticks: 500 }, restart: true } });
  }, 120_000);

  it("marks required workers and carries the try boot's health check in the guest config", async () => {
    const built = await build("required", { camera: { ...camera, required: true } }, { health: { windowS: 3, deadlineS: 90, worker: "camera" } });
    const config = JSON.parse(text(entriesOf(built.initrd).get("etc/cohesix/config.json"))) as { programs: Record<string, unknown>; health: unknown };
    expect(config.programs).toEqual({ camera: { entry: "dist/workers/camera.mjs", role: "worker-camera", budget: { ticks: 500 }, restart: true, required: true } });
    expect(config.health).toEqual({ windowS: 3, deadlineS: 90, worker: "camera" });
  }, 120_000);

  it("refuses a project worker named like a built-in one", async () => {
    await expect(build("clash", { heartbeat: camera })).rejects.toThrow('invalid: image: project worker "heartbeat" has the name of a built-in worker');
  }, 60_000);
});
