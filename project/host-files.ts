/**
 * A project's `files` on the host board. In the image each file sits at its
 * guest path (`/etc/app/settings.json`); on the host board the same tree is
 * made under a folder of the project (default `.cohesix/host/root/`), and
 * workers get that folder as `COHESIX_ROOT`, which the worker API's
 * `appPath` joins in front of a guest path. The folder is made afresh at
 * every serve, so it holds exactly what the config lists.
 * @module
 */
import { chmod, copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { InvalidError } from "../nine-door/index.ts";
import type { ProjectConfig } from "./config.ts";

/** Options of {@link placeForHost}. */
export interface PlaceForHostOptions {
  /** The folder standing for the guest's `/`; default `<project>/.cohesix/host/root`. */
  readonly rootDir?: string;
}

/**
 * Copies the project's `files` under the host board's root folder, each at
 * its guest path (with its `mode`, when given), and returns that folder.
 *
 * @example
 * ```ts
 * const root = await placeForHost(project); // "/home/me/app/.cohesix/host/root"
 * // /etc/app/settings.json is now /home/me/app/.cohesix/host/root/etc/app/settings.json
 * ```
 */
export async function placeForHost(project: ProjectConfig, options: PlaceForHostOptions = {}): Promise<string> {
  const root = resolve(options.rootDir ?? join(project.dir, ".cohesix", "host", "root"));
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  for (const f of project.files) {
    const to = resolve(root, `.${f.dest}`);
    if (!to.startsWith(`${root}/`)) throw new InvalidError(`files: ${f.dest} leaves the appliance's file system`);
    await mkdir(dirname(to), { recursive: true });
    await copyFile(f.src, to);
    if (f.mode !== undefined) await chmod(to, f.mode);
  }
  return root;
}
