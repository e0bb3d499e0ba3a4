/**
 * Files whose content a function produces when they are opened, like
 * `/proc` files: `/proc/sessions`, `/proc/workers`, `/proc/lifecycle/state`.
 * @module
 */
import { BaseNode, isPromiseLike, readAt, toBytes } from "./base.ts";
import type { NodeOptions } from "./base.ts";
import { PermissionError } from "../errors.ts";
import type { MaybePromise, OpenFile, OpenFlags, RequestContext } from "./node.ts";

/** Produces a generated file's content for one open. */
export type Generate = (ctx: RequestContext) => MaybePromise<string | Uint8Array>;

/**
 * A read-only file (perm `0o444`) whose content `generate` produces at open
 * time. Each open takes one snapshot, so reads at successive offsets on one
 * fid are consistent even while the source changes; a new open sees new
 * content. `stat()` reports length 0 (unknown until opened). Opening for
 * writing or with OTRUNC answers `permission:`; whatever `generate` throws
 * is the open's error.
 *
 * Concurrency: `generate` may run concurrently for several opens.
 *
 * @example
 * ```ts
 * const workers = new GeneratedFile("workers", () =>
 *   registry.list().map((w) => `id=${w.id} role=${w.role}\n`).join(""),
 * );
 * ```
 */
export class GeneratedFile extends BaseNode {
  readonly #generate: Generate;

  constructor(name: string, generate: Generate, options: NodeOptions = {}) {
    super(name, { ...options, mode: options.perm ?? 0o444 });
    this.#generate = generate;
  }

  override open(flags: OpenFlags, ctx: RequestContext): MaybePromise<OpenFile> {
    this.checkAccess(flags, { read: true, write: false });
    const content = this.#generate(ctx);
    return isPromiseLike(content) ? content.then(snapshot) : snapshot(content);
  }
}

function snapshot(content: string | Uint8Array): OpenFile {
  // Copy caller-owned bytes so later changes to them do not leak into this open.
  const bytes = typeof content === "string" ? toBytes(content) : content.slice();
  return {
    read: (offset, count) => readAt(bytes, offset, count),
    write: () => {
      throw new PermissionError("write: generated files are read-only");
    },
  };
}
