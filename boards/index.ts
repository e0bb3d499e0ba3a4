/**
 * Boards (DESIGN §9): one folder per board under `boards/`, each holding a
 * `board.json` — the QEMU machine, kernel command line and module load
 * order, guest network, initramfs size limit and the sha256 pins of every
 * downloaded artefact. A new board is a new folder, never new code.
 *
 * Folders resolve relative to the installed `cohesix` package (DESIGN §11),
 * never to the current directory.
 *
 * - `board.ts` — the {@link Board} type and {@link parseBoard}, which
 *   validates a board file and names the bad field.
 *
 * @example
 * ```ts
 * import { listBoards, loadBoard } from "../boards/index.ts";
 *
 * listBoards(); // ["aarch64-virt"]
 * const board = loadBoard("aarch64-virt");
 * board.kernel.modules[0]; // "virtio_pci_legacy_dev"
 * ```
 * @module
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidError, NotFoundError } from "../nine-door/index.ts";
import { parseBoard, type Board } from "./board.ts";
import { packageRoot } from "./package-root.ts";

export { packageRoot } from "./package-root.ts";

export {
  parseBoard,
  type Board,
  type BoardArtefacts,
  type BoardKernel,
  type BoardNetwork,
  type BoardQemu,
  type BoardSysroot,
  type DebPin,
  type DebRole,
  type NativePin,
  type NodePin,
} from "./board.ts";

/** Options of {@link loadBoard} and {@link listBoards}. */
export interface BoardsOptions {
  /** The folder holding one folder per board; default `<package root>/boards`. */
  readonly boardsDir?: string;
}

/**
 * The folder that holds the installed package's boards.
 *
 * @example
 * ```ts
 * boardsDir(); // "/…/node_modules/cohesix/boards"
 * ```
 */
export function boardsDir(): string {
  return join(packageRoot(), "boards");
}

/**
 * The names of the boards: the folders under the boards folder that hold a
 * `board.json`, sorted.
 *
 * @example
 * ```ts
 * listBoards(); // ["aarch64-virt"]
 * ```
 */
export function listBoards(options: BoardsOptions = {}): string[] {
  const dir = options.boardsDir ?? boardsDir();
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(dir, e.name, "board.json")))
    .map((e) => e.name)
    .sort();
}

/**
 * Reads and validates `boards/<name>/board.json`. An unknown board answers
 * `not found:` listing the known ones; a malformed file answers `invalid:`
 * naming the field.
 *
 * @example
 * ```ts
 * const board = loadBoard("aarch64-virt");
 * board.qemu.machine; // "virt"
 * loadBoard("rpi9"); // NotFoundError: not found: no board "rpi9" (known: aarch64-virt)
 * ```
 */
export function loadBoard(name: string, options: BoardsOptions = {}): Board {
  const root = options.boardsDir ?? boardsDir();
  const known = listBoards({ boardsDir: root });
  if (!known.includes(name)) {
    throw new NotFoundError(`no board ${JSON.stringify(name)} (known: ${known.join(", ") || "none"}; boards live in ${root})`);
  }
  const dir = join(root, name);
  const source = join(dir, "board.json");
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(source, "utf8"));
  } catch (err) {
    throw new InvalidError(`board ${source}: not valid JSON: ${(err as Error).message}`);
  }
  const board = parseBoard(parsed, { dir, source });
  if (board.name !== name) throw new InvalidError(`board ${source}: name ${JSON.stringify(board.name)} differs from its folder ${JSON.stringify(name)}`);
  return board;
}
