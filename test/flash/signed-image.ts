/**
 * A small, real, signed disk image for the writer tests (MBR, FAT boot
 * partition, ext4 data partition, detached manifest), made by
 * writeDiskImage from tiny boot files; and a second release key pair that
 * did not sign it.
 */
import { copyFile, open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { writeDiskImage } from "../../flash/disk.ts";
import { manifestPathOf } from "../../flash/index.ts";
import { readPrivateKey, writeKeyPair } from "../../root-task/index.ts";

export interface SignedImage {
  readonly image: string;
  readonly size: number;
  readonly sha256: string;
  readonly pub: string;
  readonly otherPub: string;
}

/** Makes `dir/good.img` and its manifest, signed by `dir/keys/release.key`. */
export async function makeSignedImage(dir: string): Promise<SignedImage> {
  const pair = await writeKeyPair(join(dir, "keys"), { name: "release" });
  const other = await writeKeyPair(join(dir, "other-keys"), { name: "release" });
  await writeFile(join(dir, "Image"), Buffer.alloc(200_000, 7));
  await writeFile(join(dir, "initrd.gz"), Buffer.alloc(100_000, 9));
  await writeFile(join(dir, "extlinux.conf"), "default cohesix\nlabel cohesix\n  kernel /Image\n  initrd /initrd.gz\n");
  const image = join(dir, "good.img");
  const written = await writeDiskImage(image, {
    board: "test",
    bootFiles: [
      { path: "/Image", src: join(dir, "Image") },
      { path: "/initrd.gz", src: join(dir, "initrd.gz") },
      { path: "/extlinux/extlinux.conf", src: join(dir, "extlinux.conf") },
    ],
    releaseKey: await readPrivateKey(pair.privatePath),
    initramfsDigest: `sha256:${"cd".repeat(32)}`,
    dataBytes: 4 << 20,
    epoch: 1_700_000_000,
  });
  return { image, size: written.manifest.image.size, sha256: written.manifest.image.sha256, pub: pair.publicPath, otherPub: other.publicPath };
}

/** A copy of the image and its manifest under `name`, with the byte at `flip` inverted when given. */
export async function copyImage(from: string, to: string, flip?: number): Promise<string> {
  await copyFile(from, to);
  await copyFile(manifestPathOf(from), manifestPathOf(to));
  if (flip !== undefined) {
    const fh = await open(to, "r+");
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, flip);
    one[0] = one[0]! ^ 0xff;
    await fh.write(one, 0, 1, flip);
    await fh.close();
  }
  return to;
}
