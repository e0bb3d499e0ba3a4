/**
 * Writing a verified bundle into the inactive slot of the boot partition,
 * in the order that keeps a power cut harmless:
 *
 * 1. the state marks the slot `empty` (its old build is about to go), so
 *    nothing — a `rollback`, U-Boot's fallback — takes a half-written slot
 *    for a good one;
 * 2. the slot's old files are removed (a FAT boot partition has room for
 *    one slot's next build, not for a third copy) and the payloads written,
 *    each fdatasync'd, the slot's `manifest.json` last;
 * 3. the state marks the slot `trying` with its tries: only now will U-Boot
 *    boot it.
 *
 * Every state write goes through `writeBootStateFiles` (state.env, then
 * state.bak, each synced). The active slot's files are never opened.
 * @module
 */
import { mkdir, open, rm, statfs } from "node:fs/promises";
import { join } from "node:path";
import { InvalidError, TooBigError } from "../nine-door/index.ts";
import { nextBootState, writeBootStateFiles } from "./boot-partition.ts";
import { SLOT_FILES } from "./boot-script.ts";
import type { BootState, Slot } from "./boot-state.ts";
import { payloadRanges, type BundleHeader } from "./bundle.ts";

/** Options of {@link writeSlot}. */
export interface WriteSlotOptions {
  readonly bootDir: string;
  /** The slot to write: never the running or the active one (the caller checks). */
  readonly slot: Slot;
  /** The state before the write (as read just now). */
  readonly state: BootState;
  /** Try boots the slot gets. */
  readonly tries: number;
  /** The verified staged bundle and its header. */
  readonly bundle: string;
  readonly header: BundleHeader;
  readonly headerEnd: number;
}

/**
 * Writes the payloads of a verified bundle into `slot` and sets it to try;
 * resolves with the final state once it is durable.
 *
 * @example
 * ```ts
 * const next = await writeSlot({ bootDir: "/boot", slot: "b", state, tries: 3, bundle: staging.path, header, headerEnd });
 * next.try; // "b"
 * ```
 */
export async function writeSlot(o: WriteSlotOptions): Promise<BootState> {
  if (o.slot === o.state.active) throw new InvalidError(`slot ${o.slot} is the confirmed slot: an update only writes the other one`);
  const dir = join(o.bootDir, o.slot);
  const room = await roomFor(o.bootDir, dir);
  if (room !== undefined) {
    const fit = slotFits({ payloads: o.header.payloads.map((p) => p.size), ...room });
    if (!fit.fits) throw new TooBigError(`the bundle's payloads take ${fit.needed} bytes on the boot partition, slot ${o.slot} has ${fit.room} (its old files and the free space)`);
  }
  const emptied = nextBootState(o.state, { slots: { ...o.state.slots, [o.slot]: "empty" } });
  await writeBootStateFiles(o.bootDir, emptied);
  for (const name of Object.values(SLOT_FILES)) await rm(join(dir, name), { force: true });
  await mkdir(dir, { recursive: true });
  const source = await open(o.bundle, "r");
  try {
    // The manifest last: a slot with a manifest has every file it lists.
    const order = [SLOT_FILES.kernel, SLOT_FILES.initrd, SLOT_FILES.manifest];
    const ranges = new Map(payloadRanges(o.header).map((r) => [r.name as string, r]));
    for (const name of order) {
      const range = ranges.get(name)!;
      const out = await open(join(dir, name), "w", 0o644);
      try {
        const buf = Buffer.alloc(1 << 20);
        for (let at = range.start; at < range.end; ) {
          const { bytesRead } = await source.read(buf, 0, Math.min(buf.length, range.end - at), at);
          if (bytesRead === 0) throw new InvalidError(`staged bundle ends at ${at}, before ${range.end}`);
          await out.write(buf, 0, bytesRead);
          at += bytesRead;
        }
        await out.datasync();
      } finally {
        await out.close();
      }
    }
  } finally {
    await source.close();
  }
  await syncDir(dir);
  const trying = nextBootState(emptied, { try: o.slot, tries: o.tries, slots: { ...emptied.slots, [o.slot]: "trying" } });
  await writeBootStateFiles(o.bootDir, trying);
  return trying;
}

/**
 * Whether payloads of these sizes fit where a slot's old files (removed
 * first) and the partition's free space are: every file takes whole blocks
 * (FAT clusters), so sizes are rounded up to `blockSize`.
 *
 * @example
 * ```ts
 * slotFits({ payloads: [5000, 3000], oldFiles: [4096], freeBlocks: 1, blockSize: 4096 }); // { fits: false, needed: 12288, room: 8192 }
 * ```
 */
export function slotFits(o: { payloads: readonly number[]; oldFiles: readonly number[]; freeBlocks: number; blockSize: number }): { fits: boolean; needed: number; room: number } {
  const blocks = (size: number): number => Math.ceil(size / o.blockSize) * o.blockSize;
  const needed = o.payloads.reduce((sum, size) => sum + blocks(size), 0);
  const room = o.freeBlocks * o.blockSize + o.oldFiles.reduce((sum, size) => sum + blocks(size), 0);
  return { fits: needed <= room, needed, room };
}

/** What {@link slotFits} needs to know of the boot partition and the slot's old files; undefined when it cannot be known. */
async function roomFor(bootDir: string, dir: string): Promise<{ oldFiles: number[]; freeBlocks: number; blockSize: number } | undefined> {
  try {
    const fs = await statfs(bootDir);
    const oldFiles: number[] = [];
    for (const name of Object.values(SLOT_FILES)) {
      const handle = await open(join(dir, name), "r").catch(() => undefined);
      if (handle === undefined) continue;
      oldFiles.push((await handle.stat()).size);
      await handle.close();
    }
    return { oldFiles, freeBlocks: Number(fs.bavail), blockSize: Number(fs.bsize) };
  } catch {
    return undefined;
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } catch {
    // vfat and some others refuse fsync on a directory; the files are synced.
  } finally {
    await handle.close();
  }
}
