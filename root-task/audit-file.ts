/**
 * The on-disk copy of /log/queen.log: lines are appended as they are
 * written (no fsync — the commit log is the record, this is the human
 * view), the previous boot's tail is shown again at boot, and the file is
 * rotated once to `queen.log.1` when it grows past its limit.
 * @module
 */
import { closeSync, openSync, readSync, renameSync, statSync, writeSync } from "node:fs";

/** Bytes kept in the live file before rotation. */
const ROTATE_BYTES = 4 << 20;
/** Bytes of the previous boot's log shown again. */
const TAIL_BYTES = 64 << 10;

/**
 * An append-only text file with a remembered tail.
 *
 * @example
 * ```ts
 * const audit = await AuditFile.open("/var/lib/cohesix/queen.log");
 * log.append(audit.previous);
 * audit.write("2026-11-28T… spawned worker-1 role=heartbeat\n");
 * ```
 */
export class AuditFile {
  /** Whole lines from the end of the file as the previous boot left it. */
  readonly previous: string;
  #fd: number | undefined;
  #size: number;
  readonly #path: string;

  private constructor(path: string, fd: number, size: number, previous: string) {
    this.#path = path;
    this.#fd = fd;
    this.#size = size;
    this.previous = previous;
  }

  /** Opens (creating) the file and reads the previous tail. */
  static async open(path: string): Promise<AuditFile> {
    let size = 0;
    try {
      size = statSync(path).size;
    } catch {
      // A first boot has no log yet.
    }
    let previous = "";
    if (size > 0) {
      const fd = openSync(path, "r");
      try {
        const n = Math.min(size, TAIL_BYTES);
        const buf = Buffer.alloc(n);
        readSync(fd, buf, 0, n, size - n);
        let text = buf.toString("utf8");
        if (n < size) text = text.slice(text.indexOf("\n") + 1);
        previous = text.endsWith("\n") || text === "" ? text : `${text}\n`;
      } finally {
        closeSync(fd);
      }
    }
    if (size > ROTATE_BYTES) {
      renameSync(path, `${path}.1`);
      size = 0;
    }
    return new AuditFile(path, openSync(path, "a", 0o600), size, previous);
  }

  /** Appends text; rotates past the limit. Failures never stop the appliance. */
  write(text: string): void {
    if (this.#fd === undefined) return;
    try {
      this.#size += writeSync(this.#fd, text);
      if (this.#size > ROTATE_BYTES) {
        closeSync(this.#fd);
        renameSync(this.#path, `${this.#path}.1`);
        this.#fd = openSync(this.#path, "a", 0o600);
        this.#size = 0;
      }
    } catch {
      // A full disk must not take the control plane down with it.
    }
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}
