/**
 * The provider conformance suite: any `Node` implementation runs it to check
 * the contract the server core relies on (DESIGN §3, nine-door/fs/node.ts).
 *
 * @example
 * ```ts
 * runProviderConformance("StaticFile", () => new StaticFile("boot", "hi\n"));
 * runProviderConformance("AppendLog (tail)", () => new AppendLog("t", { blockingReads: true }), { blockingReads: true });
 * ```
 * @module
 */
import { describe, expect, it } from "vitest";
import { DirMode, QidType } from "../../../nine-door/wire/types.ts";
import { Errno, InvalidError, NineError, NotFoundError, PermissionError } from "../../../nine-door/errors.ts";
import type { Caller, MaybePromise, Node, OpenFile, OpenFlags, RequestContext } from "../../../nine-door/fs/index.ts";

/** Options of `runProviderConformance`. */
export interface ConformanceOptions {
  /** A write the node accepts (for writable files); default `"x\n"`. */
  readonly sample?: Uint8Array;
  /** The node's reads at the end wait for data (a tail). */
  readonly blockingReads?: boolean;
}

/** Flags for a read-only open. */
export const READ: OpenFlags = { read: true, write: false, truncate: false };
/** Flags for a write-only open. */
export const WRITE: OpenFlags = { read: false, write: true, truncate: false };
/** Flags for a read-write open. */
export const RDWR: OpenFlags = { read: true, write: true, truncate: false };

/**
 * A request context for tests.
 *
 * @example
 * ```ts
 * const ac = new AbortController();
 * const c = ctx({ signal: ac.signal, caller: { role: "queen", subject: "queen" } });
 * ```
 */
export function ctx(options: { signal?: AbortSignal; caller?: Caller } = {}): RequestContext {
  return {
    caller: options.caller ?? { role: "queen", subject: "queen" },
    signal: options.signal ?? new AbortController().signal,
  };
}

/** Decodes bytes as UTF-8 text. */
export function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/** Encodes text as UTF-8 bytes. */
export function bytes(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/**
 * Resolves to the error `fn` throws or rejects with; fails if it succeeds.
 *
 * @example
 * ```ts
 * expect(await caught(() => dir.walk("nope", ctx()))).toBeInstanceOf(NotFoundError);
 * ```
 */
export async function caught(fn: () => MaybePromise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected an error, got success");
}

async function openOrError(node: Node, flags: OpenFlags): Promise<OpenFile | NineError> {
  try {
    return await node.open(flags, ctx());
  } catch (err) {
    if (err instanceof NineError) return err;
    throw err;
  }
}

const isDir = (node: Node): boolean => (node.mode & DirMode.DIR) !== 0;

/**
 * Registers a `describe` block checking the provider contract for nodes made
 * by `makeNode` (called afresh for each test).
 *
 * @example
 * ```ts
 * runProviderConformance("Directory", () => new Directory("d", { children: [new StaticFile("a", "1")] }));
 * ```
 */
export function runProviderConformance(
  name: string,
  makeNode: () => MaybePromise<Node>,
  options: ConformanceOptions = {},
): void {
  const sample = options.sample ?? bytes("x\n");

  describe(`${name} conforms to the provider contract`, () => {
    it("keeps qid.path stable across calls and unique among nodes", async () => {
      const node = await makeNode();
      const other = await makeNode();
      expect(node.qid.path).toBe(node.qid.path);
      expect(node.qid.path).not.toBe(other.qid.path);
      expect(typeof node.qid.path).toBe("bigint");
    });

    it("derives the qid type from the DIR and APPEND mode bits", async () => {
      const node = await makeNode();
      expect((node.qid.type & QidType.DIR) !== 0).toBe((node.mode & DirMode.DIR) !== 0);
      expect((node.qid.type & QidType.APPEND) !== 0).toBe((node.mode & DirMode.APPEND) !== 0);
    });

    it("reports a stat with owners and finite times", async () => {
      const node = await makeNode();
      const st = node.stat();
      expect(Number.isFinite(st.mtimeMs)).toBe(true);
      expect(Number.isFinite(st.atimeMs)).toBe(true);
      expect(st.length).toBeGreaterThanOrEqual(0);
      for (const owner of [st.uid, st.gid, st.muid]) expect(owner.length).toBeGreaterThan(0);
      expect(node.stat()).toEqual(st);
    });

    it("answers a directory's walk, list and open as the contract says, and a file's as not a directory", async () => {
      const node = await makeNode();
      if (isDir(node)) {
        const first = await node.list(ctx());
        const second = await node.list(ctx());
        expect(second.map((n) => n.name)).toEqual(first.map((n) => n.name));
        expect(second.map((n) => n.qid.path)).toEqual(first.map((n) => n.qid.path));
        expect(new Set(first.map((n) => n.name)).size).toBe(first.length);
        for (const child of first) {
          expect(child.name).not.toMatch(/^\.\.?$|\//);
          const walked = await node.walk(child.name, ctx());
          expect(walked.qid.path).toBe(child.qid.path);
          expect((await node.walk(child.name, ctx())).qid.path).toBe(walked.qid.path);
        }
        const missing = await caught(() => node.walk("no-such-name", ctx()));
        expect(missing).toBeInstanceOf(NotFoundError);
        const open = await caught(() => node.open(READ, ctx()));
        expect(open).toBeInstanceOf(InvalidError);
        expect((open as NineError).errno).toBe(Errno.EISDIR);
      } else {
        for (const call of [() => node.walk("x", ctx()), () => node.list(ctx())]) {
          const err = await caught(call);
          expect(err).toBeInstanceOf(InvalidError);
          expect((err as NineError).errno).toBe(Errno.ENOTDIR);
        }
      }
    });

    it("returns empty for a read past the end of a file", async () => {
      const node = await makeNode();
      if (isDir(node) || options.blockingReads === true) return;
      const file = await openOrError(node, READ);
      if (file instanceof NineError) {
        expect(file).toBeInstanceOf(PermissionError);
        return;
      }
      expect((await file.read(1 << 30, 100, ctx())).length).toBe(0);
      file.close?.();
    });

    it("bumps qid.version after a write when writable, and refuses writes with permission otherwise", async () => {
      const node = await makeNode();
      if (isDir(node)) return;
      const file = await openOrError(node, WRITE);
      if (file instanceof NineError) {
        expect(file).toBeInstanceOf(PermissionError);
        return;
      }
      const before = node.qid;
      const n = await file.write(0, sample, ctx());
      expect(n).toBe(sample.length);
      expect(node.qid.version).toBe((before.version + 1) >>> 0);
      expect(node.qid.path).toBe(before.path);
      file.close?.();
    });

    if (options.blockingReads !== true) return;

    it("gives up a blocked read promptly when the request aborts", async () => {
      const node = await makeNode();
      const file = await node.open(READ, ctx());
      const end = node.stat().length;
      const ac = new AbortController();
      const started = Date.now();
      const read = Promise.resolve(file.read(end, 100, ctx({ signal: ac.signal })));
      setTimeout(() => ac.abort(), 10);
      const err = await caught(() => read);
      expect(err).toBeInstanceOf(NineError);
      expect((err as NineError).errorClass).toBe("closed");
      expect(Date.now() - started).toBeLessThan(500);
    });

    it("refuses a read on an already aborted request at the end", async () => {
      const node = await makeNode();
      const file = await node.open(READ, ctx());
      const ac = new AbortController();
      ac.abort();
      const err = await caught(() => file.read(node.stat().length, 100, ctx({ signal: ac.signal })));
      expect(err).toBeInstanceOf(NineError);
    });
  });
}
