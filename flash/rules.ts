/**
 * The rules that decide which disks `cohesix flash` may write (after fwup
 * and gokrazy): every disk gets a list of refusals, a disk without any is a
 * candidate, and a device is picked automatically only when exactly one
 * candidate exists.
 *
 * @example
 * ```ts
 * const assessed = assessDisks(await listDisks(systemView()), { imageBytes: 300 << 20 });
 * const disk = chooseDisk(assessed, { requested: "sdb" }); // throws RefusedError naming why not
 * ```
 * @module
 */
import { NineError } from "../nine-door/index.ts";
import { formatBytes, type Disk } from "./devices.ts";

/** Why a disk may not be written. */
export type RefusalCode = "not-removable" | "system" | "mounted" | "swap" | "in-use" | "read-only" | "too-small" | "too-large";

/** One reason, with the words a user reads. */
export interface Refusal {
  readonly code: RefusalCode;
  readonly message: string;
}

/** A disk and what stands in the way of writing it. */
export interface Assessed {
  readonly disk: Disk;
  /** Empty: the disk is a candidate. */
  readonly refusals: readonly Refusal[];
}

/**
 * The largest disk a board's card or stick can plausibly be: 512 GiB.
 * SD cards and USB sticks for boards are far smaller; a disk this big is
 * most likely a backup or system drive. `--max-size` raises it.
 */
export const DEFAULT_MAX_BYTES = 512 * 1024 ** 3;

/** The rules' inputs. */
export interface Rules {
  /** The image's size: a smaller disk cannot hold it. */
  readonly imageBytes: number;
  /** Default {@link DEFAULT_MAX_BYTES}. */
  readonly maxBytes?: number;
  /** `--unmount`: mounted partitions are unmounted instead of refused. */
  readonly unmount?: boolean;
}

/** A device that may not be written, with every reason. */
export class RefusedError extends NineError {
  readonly refusals: readonly Refusal[];
  constructor(detail: string, refusals: readonly Refusal[] = []) {
    super("permission", detail);
    this.name = "RefusedError";
    this.refusals = refusals;
  }
}

/** Everything that stands in the way of writing `disk`. */
export function refusalsOf(disk: Disk, rules: Rules): Refusal[] {
  const out: Refusal[] = [];
  const max = rules.maxBytes ?? DEFAULT_MAX_BYTES;
  if (disk.systemMounts.length > 0) {
    out.push({ code: "system", message: `holds ${disk.systemMounts.join(", ")} (this machine's own disk)` });
  }
  if (!disk.removable) out.push({ code: "not-removable", message: "not removable (an internal disk)" });
  if (disk.readOnly) out.push({ code: "read-only", message: "read-only (check the card's write-protect switch)" });
  if (disk.swap.length > 0) out.push({ code: "swap", message: `swap in use on ${disk.swap.join(", ")} (swapoff it first)` });
  if (disk.holders.length > 0) {
    out.push({ code: "in-use", message: `in use by ${disk.holders.join(", ")} (LVM, LUKS or RAID: stop it first)` });
  }
  if (disk.mounts.length > 0 && !rules.unmount) {
    const where = disk.mounts.map((m) => m.target).join(", ");
    const hint = disk.systemMounts.length > 0 ? "" : " (pass --unmount to unmount it)";
    out.push({ code: "mounted", message: `mounted at ${where}${hint}` });
  }
  if (disk.sizeBytes < rules.imageBytes) {
    out.push({ code: "too-small", message: `too small: ${formatBytes(disk.sizeBytes)} < image ${formatBytes(rules.imageBytes)}` });
  }
  if (disk.sizeBytes > max) {
    out.push({ code: "too-large", message: `implausibly large for a board's card: ${formatBytes(disk.sizeBytes)} > ${formatBytes(max)} (--max-size raises the limit)` });
  }
  return out;
}

/** Applies {@link refusalsOf} to every disk. */
export function assessDisks(disks: readonly Disk[], rules: Rules): Assessed[] {
  return disks.map((disk) => ({ disk, refusals: refusalsOf(disk, rules) }));
}

/**
 * The device list as a table, one disk per line:
 * `/dev/sdb  29.7 GiB  SanDisk Ultra  removable  -  ok`.
 */
export function formatCandidates(assessed: readonly Assessed[]): string {
  if (assessed.length === 0) return "no block devices found\n";
  const rows = [
    ["DEVICE", "SIZE", "MODEL", "REMOVABLE", "MOUNTED", "STATUS"],
    ...assessed.map(({ disk, refusals }) => [
      disk.path,
      formatBytes(disk.sizeBytes),
      disk.model || "-",
      disk.removable ? "yes" : "no",
      disk.mounts.length > 0 ? disk.mounts.map((m) => m.target).join(",") : "-",
      refusals.length === 0 ? "candidate" : `refused: ${refusals.map((r) => r.message).join("; ")}`,
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n") + "\n";
}

/**
 * Picks the disk to write. With `requested` (a kernel name), that disk,
 * refused with every reason if it has any; a partition is refused with the
 * name of its disk. Without, the only candidate; none or several are
 * refused with the list.
 */
export function chooseDisk(assessed: readonly Assessed[], options: { requested?: string } = {}): Disk {
  const { requested } = options;
  if (requested !== undefined) {
    const found = assessed.find((a) => a.disk.name === requested);
    if (found === undefined) {
      const parent = assessed.find((a) => a.disk.partitions.some((p) => p.name === requested));
      if (parent !== undefined) {
        throw new RefusedError(`${requested} is a partition: flash the whole disk, --device ${parent.disk.path}`);
      }
      throw new RefusedError(`no disk ${requested}: the disks are\n${formatCandidates(assessed)}`);
    }
    if (found.refusals.length > 0) {
      throw new RefusedError(`refusing ${found.disk.path}: ${found.refusals.map((r) => r.message).join("; ")}`, found.refusals);
    }
    return found.disk;
  }
  const candidates = assessed.filter((a) => a.refusals.length === 0);
  if (candidates.length === 1) return candidates[0]!.disk;
  if (candidates.length === 0) {
    throw new RefusedError(`no disk can be flashed: insert an SD card or USB stick (removable, not mounted, large enough)\n${formatCandidates(assessed)}`);
  }
  throw new RefusedError(`${candidates.length} candidate disks: pick one with --device\n${formatCandidates(assessed)}`);
}
