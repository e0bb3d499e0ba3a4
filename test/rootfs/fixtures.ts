/**
 * Stand-in artefacts for image builds: small text files where the board's
 * Node, busybox, kernel, modules and sysroot libraries go, so an image can be
 * assembled and inspected without the real (pinned, cached) artefacts.
 *
 * @example
 * const artefacts = standInArtefacts(join(work, "artefacts"), board);
 * const queenPub = standInQueenPub(join(work, "queen.pub"));
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Board } from "../../boards/index.ts";
import type { ImageArtefacts } from "../../rootfs/index.ts";

/** The kernel version the stand-in modules are filed under. */
export const STAND_IN_KERNEL_VERSION = "6.1.0-test-arm64";

/** Writes `text` to `path`, making its folder first; returns the path. */
export function put(path: string, text: string): string {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, text);
  return path;
}

/** What to lay out besides the board's own kernel modules, and where under `lib/modules/VERSION/kernel`. */
export interface StandInOptions {
  /** More module names (e.g. a disk spec's file system modules). */
  readonly extraModules?: readonly string[];
  /** A module's folder below `kernel/`, from its name and place in the list ("" by default: directly in `kernel/`). */
  readonly moduleFolder?: (name: string, index: number) => string;
}

/** Lays out stand-in artefacts for `board` under the folder `at`. */
export function standInArtefacts(at: string, board: Board, options: StandInOptions = {}): ImageArtefacts {
  const modules = join(at, "lib", "modules", STAND_IN_KERNEL_VERSION);
  const folder = options.moduleFolder ?? (() => "");
  [...board.kernel.modules, ...(options.extraModules ?? [])].forEach((m, i) => put(join(modules, "kernel", folder(m, i), `${m}.ko`), `module ${m}\n`));
  for (const lib of [board.sysroot.loader, ...board.sysroot.libraries]) put(join(at, "sysroot", "lib", board.sysroot.triplet, lib), `library ${lib}\n`);
  return {
    node: put(join(at, "node"), "node binary\n"),
    busybox: put(join(at, "busybox"), "busybox binary\n"),
    kernel: put(join(at, "Image"), "kernel image\n"),
    sysroot: join(at, "sysroot"),
    modules,
    kernelVersion: STAND_IN_KERNEL_VERSION,
  };
}

/** Writes a stand-in queen public key file (its text is never parsed by an image build); returns the path. */
export function standInQueenPub(path: string): string {
  return put(path, "cohesix-ed25519-public test\n");
}
