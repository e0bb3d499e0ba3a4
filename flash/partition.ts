/**
 * The disk's partition table as plain data: an MBR (DOS) label with a FAT
 * boot partition and a data partition, 1 MiB aligned. {@link sfdiskScript}
 * is the one place that serialises it (sfdisk writes the bytes);
 * {@link readMbr} reads a table back from an image's first sector.
 * @module
 */
import { InvalidError } from "../nine-door/index.ts";

/** Bytes per sector: the only size MBR images use here. */
export const SECTOR = 512;
/** Partitions start on 1 MiB boundaries (2048 sectors), as every partitioning tool does. */
export const ALIGN_BYTES = 1 << 20;

/** MBR partition type bytes used by the image. */
export const PARTITION_TYPES = {
  /** FAT32 (LBA): what U-Boot's distro boot and Raspberry-style boot ROMs look for. */
  fat: 0x0c,
  /** Linux. */
  linux: 0x83,
} as const;

/** One partition: offsets and sizes in bytes (multiples of {@link SECTOR}). */
export interface Partition {
  /** 1-based partition number (`/dev/vda1` is 1). */
  readonly index: number;
  /** What the image uses it for. */
  readonly role: "boot" | "data";
  /** MBR type byte. */
  readonly type: number;
  readonly bootable: boolean;
  readonly start: number;
  readonly size: number;
}

/** A disk label: the MBR disk identifier, the whole size, the partitions. */
export interface PartitionTable {
  /** 32-bit disk identifier (Linux shows PARTUUIDs as `<id>-01`). */
  readonly diskId: number;
  readonly size: number;
  readonly partitions: readonly Partition[];
}

const alignUp = (n: number): number => Math.ceil(n / ALIGN_BYTES) * ALIGN_BYTES;

/**
 * Lays out the image: 1 MiB for the label, the boot partition, the data
 * partition, each rounded up to whole MiB.
 *
 * @example
 * ```ts
 * const table = layoutDisk({ bootBytes: 96 << 20, dataBytes: 64 << 20, diskId: 0x0c0e5100 });
 * table.partitions[1].start; // 97 MiB
 * ```
 */
export function layoutDisk(options: { bootBytes: number; dataBytes: number; diskId: number }): PartitionTable {
  const { bootBytes, dataBytes, diskId } = options;
  if (!Number.isSafeInteger(bootBytes) || bootBytes <= 0) throw new InvalidError(`disk layout: boot partition size ${bootBytes} must be a positive byte count`);
  if (!Number.isSafeInteger(dataBytes) || dataBytes <= 0) throw new InvalidError(`disk layout: data partition size ${dataBytes} must be a positive byte count`);
  if (!Number.isInteger(diskId) || diskId < 0 || diskId > 0xffffffff) throw new InvalidError(`disk layout: disk id must be a 32-bit number`);
  const boot: Partition = { index: 1, role: "boot", type: PARTITION_TYPES.fat, bootable: true, start: ALIGN_BYTES, size: alignUp(bootBytes) };
  const data: Partition = { index: 2, role: "data", type: PARTITION_TYPES.linux, bootable: false, start: boot.start + boot.size, size: alignUp(dataBytes) };
  return { diskId, size: data.start + data.size, partitions: [boot, data] };
}

const hex = (n: number, width: number): string => n.toString(16).padStart(width, "0");

/**
 * The sfdisk script that writes `table` (`sfdisk --no-reread --no-tell-kernel IMAGE < script`).
 *
 * @example
 * ```ts
 * sfdiskScript(table);
 * // "label: dos\nlabel-id: 0x0c0e5100\nunit: sectors\n\nstart=2048, size=196608, type=c, bootable\n…"
 * ```
 */
export function sfdiskScript(table: PartitionTable): string {
  const lines = ["label: dos", `label-id: 0x${hex(table.diskId, 8)}`, "unit: sectors", "sector-size: 512", ""];
  for (const p of table.partitions) {
    lines.push(`start=${p.start / SECTOR}, size=${p.size / SECTOR}, type=${p.type.toString(16)}${p.bootable ? ", bootable" : ""}`);
  }
  return `${lines.join("\n")}\n`;
}

/** A primary partition entry read back from an MBR. */
export interface MbrEntry {
  readonly index: number;
  readonly type: number;
  readonly bootable: boolean;
  /** Bytes. */
  readonly start: number;
  /** Bytes. */
  readonly size: number;
}

/**
 * Reads the primary partitions of an MBR from the image's first sector.
 * Refuses a sector without the 0x55AA signature.
 *
 * @example
 * ```ts
 * const { diskId, partitions } = readMbr(firstSector);
 * partitions[0]; // { index: 1, type: 0x0c, bootable: true, start: 1048576, size: … }
 * ```
 */
export function readMbr(sector: Uint8Array): { diskId: number; partitions: MbrEntry[] } {
  if (sector.byteLength < SECTOR) throw new InvalidError(`not a disk image: shorter than one sector (${sector.byteLength} bytes)`);
  const view = new DataView(sector.buffer, sector.byteOffset, SECTOR);
  if (view.getUint16(510, true) !== 0xaa55) throw new InvalidError("not a disk image: no MBR partition table (the 0x55AA signature is missing)");
  const partitions: MbrEntry[] = [];
  for (let i = 0; i < 4; i++) {
    const off = 446 + i * 16;
    const type = view.getUint8(off + 4);
    if (type === 0) continue;
    partitions.push({
      index: i + 1,
      type,
      bootable: view.getUint8(off) === 0x80,
      start: view.getUint32(off + 8, true) * SECTOR,
      size: view.getUint32(off + 12, true) * SECTOR,
    });
  }
  return { diskId: view.getUint32(440, true), partitions };
}

/**
 * The device name of partition `index` of a disk, as Linux names it:
 * `/dev/vda` → `/dev/vda1`, `/dev/mmcblk0` → `/dev/mmcblk0p1`.
 *
 * @example
 * ```ts
 * partitionDevice("/dev/mmcblk0", 2); // "/dev/mmcblk0p2"
 * ```
 */
export function partitionDevice(disk: string, index: number): string {
  return /\d$/.test(disk) ? `${disk}p${index}` : `${disk}${index}`;
}
