/**
 * `cohesix bundle`: builds a board's slot (kernel and initramfs, exactly as
 * `cohesix image` does, with the project's workers in a project folder)
 * and writes it as a signed update bundle for `cohesix update`.
 * @module
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { packageRoot } from "../boards/index.ts";
import { buildBoardBundle } from "../flash/index.ts";
import { VERSION_PATTERN } from "../root-task/index.ts";
import { required, type Parsed } from "./args.ts";
import { slotInputsOf, versionOption } from "./image.ts";
import { isNote, progressOf } from "./progress.ts";
import type { Io } from "./verb.ts";

/** The plain version in `dir`/package.json, if there is one. */
function packageVersion(dir: string): string | undefined {
  try {
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version?: unknown };
    if (typeof pkg.version === "string" && VERSION_PATTERN.test(pkg.version)) return pkg.version;
  } catch {
    // No package.json, or not JSON.
  }
  return undefined;
}

/** The version a bundle gets without `--version`: the project's package.json version, else cohesix's own. */
function defaultVersion(projectDir: string | undefined): string {
  return (projectDir !== undefined ? packageVersion(projectDir) : undefined) ?? packageVersion(packageRoot()) ?? "0.0.0";
}

/**
 * `bundle --out FILE [--board B] [--key FILE] [--queen-pub FILE] [--version V]`.
 *
 * @example
 * ```ts
 * await main(["bundle", "--out", "cohesix-1.2.0.bundle", "--version", "1.2.0"], io); // "cohesix-1.2.0.bundle\nversion 1.2.0 board aarch64-virt\n…"
 * ```
 */
export async function bundle(p: Parsed, io: Io): Promise<void> {
  const out = resolve(required(p, "out", undefined, "the bundle file to write, e.g. --out cohesix-1.2.0.bundle"));
  const given = versionOption(p);
  const started = Date.now();
  const progress = progressOf(io);
  try {
    const { options, project } = await slotInputsOf(p, io, progress);
    const version = given ?? defaultVersion(project?.dir);
    const built = await buildBoardBundle(out, {
      ...options,
      version,
      say: (line) => (isNote(line) ? progress.note(`bundle: ${line}`) : progress.step(`bundle: ${line}`)),
    });
    progress.note(`bundle: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const h = built.header;
    const size = h.payloads.reduce((n, x) => n + x.size, 0);
    if (p.values.json === true) {
      io.out(`${JSON.stringify({ bundle: out, board: h.board, version: h.version, keyId: h.keyId, payloadBytes: size, chunks: h.chunks.length, payloads: h.payloads })}\n`);
      return;
    }
    io.out(`${out}\nversion ${h.version} board ${h.board}\n${h.payloads.map((x) => `  ${x.name} ${x.size} ${x.sha256}\n`).join("")}signed by release key ${h.keyId}\n`);
  } finally {
    progress.end();
  }
}
