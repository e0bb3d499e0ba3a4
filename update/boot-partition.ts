/**
 * The boot state as files on a mounted boot partition: the one reader and
 * the one writer the appliance uses (U-Boot's boot script is the other
 * writer, in its own shell). Both copies keep their size (512 bytes), are
 * rewritten in place and synced one after the other, `state.env` first,
 * so a power cut leaves at least one whole copy (docs/updates.md).
 * @module
 */
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { chooseBootState, formatBootState, STATE_FILES, STATE_FILE_BYTES, type BootState } from "./boot-state.ts";

/** What {@link readBootStateFiles} found: the state (null when no copy is whole) and why copies were refused. */
export interface BootStateOnDisk {
  readonly state: BootState | null;
  readonly from: (typeof STATE_FILES)[number] | null;
  readonly refused: readonly string[];
}

async function readCopy(path: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/**
 * Reads both copies from `bootDir` and picks the whole one, `state.env`
 * first (see `chooseBootState`).
 *
 * @example
 * ```ts
 * const { state } = await readBootStateFiles("/boot");
 * state?.active; // "a"
 * ```
 */
export async function readBootStateFiles(bootDir: string): Promise<BootStateOnDisk> {
  const [primary, backup] = await Promise.all(STATE_FILES.map((name) => readCopy(join(bootDir, name))));
  return chooseBootState(primary, backup);
}

/**
 * Writes `state` to both copies in `bootDir`, each rewritten in place and
 * fdatasync'd before the next is touched. Resolves once both are durable.
 *
 * @example
 * ```ts
 * await writeBootStateFiles("/boot", { ...state, seq: state.seq + 1, try: "b", tries: 3, slots: { ...state.slots, b: "trying" } });
 * ```
 */
export async function writeBootStateFiles(bootDir: string, state: BootState): Promise<void> {
  const bytes = formatBootState(state);
  for (const name of STATE_FILES) {
    // "r+" keeps the file's clusters and size: on FAT a rewrite of the same
    // 512 bytes touches one sector and never the directory entry. A missing
    // copy (a damaged partition) is created.
    const handle = await open(join(bootDir, name), "r+").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return open(join(bootDir, name), "w");
      throw error;
    });
    try {
      await handle.write(bytes, 0, STATE_FILE_BYTES, 0);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }
}

/**
 * The state after `state` with one more sequence number: what every writer
 * stores (U-Boot's script and the appliance count the same way).
 *
 * @example
 * ```ts
 * nextBootState(state, { active: "b", try: null, tries: 0, slots: { a: "good", b: "good" } });
 * ```
 */
export function nextBootState(state: BootState, change: Partial<Omit<BootState, "seq">>): BootState {
  const seq = state.seq >= 0xfffffffffffff ? 1 : state.seq + 1;
  return { ...state, ...change, seq };
}
