/**
 * The whole-file check `commit` runs on the staged bundle before anything
 * is written: the file's sha256 (what `begin` named) and every payload's
 * sha256 (what the signed header lists), in one pass.
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { open } from "node:fs/promises";
import { InvalidError } from "../nine-door/index.ts";
import { payloadRanges, type BundleHeader } from "./bundle.ts";

/**
 * Reads the staged bundle once and refuses it (`invalid:`) unless its
 * sha256 is `sha256` and every payload's sha256 is the header's.
 *
 * @example
 * ```ts
 * await checkStagedBundle("/state/update/staging.bundle", { header, headerEnd, sha256 });
 * ```
 */
export async function checkStagedBundle(path: string, o: { header: BundleHeader; headerEnd: number; sha256: string }): Promise<void> {
  const whole = createHash("sha256");
  const ranges = payloadRanges(o.header).map((r) => ({ ...r, hash: createHash("sha256") as Hash }));
  const file = await open(path, "r");
  try {
    const buf = Buffer.alloc(1 << 20);
    const end = ranges.at(-1)?.end ?? o.headerEnd;
    for (let at = 0; at < end; ) {
      const { bytesRead } = await file.read(buf, 0, Math.min(buf.length, end - at), at);
      if (bytesRead === 0) throw new InvalidError(`staged bundle ends at ${at}, before ${end}: send it again`);
      const piece = buf.subarray(0, bytesRead);
      whole.update(piece);
      for (const r of ranges) {
        const s = Math.max(r.start, at);
        const e = Math.min(r.end, at + bytesRead);
        if (s < e) r.hash.update(piece.subarray(s - at, e - at));
      }
      at += bytesRead;
    }
    if ((await file.stat()).size !== end) throw new InvalidError(`staged bundle holds bytes past its last payload`);
  } finally {
    await file.close();
  }
  const got = whole.digest("hex");
  if (got !== o.sha256) throw new InvalidError(`staged bundle's sha256 ${got} is not the ${o.sha256} begin named`);
  for (const r of ranges) {
    const h = r.hash.digest("hex");
    if (h !== r.sha256) throw new InvalidError(`payload ${r.name}'s sha256 ${h} is not the signed header's ${r.sha256}`);
  }
}
