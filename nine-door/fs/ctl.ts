/**
 * Control files: a client writes one command, and reading the same fid
 * returns the reply (`/queen/ctl`, `/queen/lifecycle/ctl`,
 * `/worker/<id>/ctl`, GPU `ctl`).
 * @module
 */
import { DirMode } from "../wire/types.ts";
import { InvalidError, PermissionError, TooBigError, toNineError } from "../errors.ts";
import { BaseNode, isPromiseLike, readAt, toBytes } from "./base.ts";
import type { NodeOptions } from "./base.ts";
import type { MaybePromise, OpenFile, OpenFlags, RequestContext } from "./node.ts";

/** Runs one command and returns the reply text. Throw a `NineError` to refuse it. */
export type CtlHandler = (command: string, ctx: RequestContext) => MaybePromise<string>;

/** Options of `new CtlFile(name, handler, options)`. */
export interface CtlFileOptions extends NodeOptions {
  /** Largest command in bytes; larger writes answer `too big:`. Default 64 KiB. */
  readonly maxWrite?: number;
}

/**
 * A command file: mode `DirMode.APPEND | perm` (perm `0o660`), so write
 * offsets are ignored and OTRUNC is harmless. Each write is one command: it
 * is decoded as UTF-8, trailing newlines are trimmed (inner newlines are
 * kept, so pretty-printed JSON is one command), and `handler` runs with it.
 * An empty command answers `invalid: empty command` without calling it.
 *
 * Replies are per open file (per fid): reading returns that fid's last reply,
 * by offset, with a newline appended if it lacked one; before any command it
 * is empty. When the handler throws, the writer gets the error as the
 * Twrite's answer, and the fid's reply becomes the error line
 * `<class>: <detail>\n` (non-NineErrors read as `io: <message>`), so a
 * script that reads after a failed write sees why.
 *
 * Concurrency: commands on one fid run one at a time in arrival order, and
 * a read waits for the fid's pending commands; different fids call the
 * handler concurrently. Only successful commands bump the version.
 *
 * @example
 * ```ts
 * const ctl = new CtlFile("ctl", async (command, ctx) => {
 *   const cmd = parseQueenCommand(command); // throws InvalidError
 *   return JSON.stringify(await queen.run(cmd, ctx.caller));
 * });
 * ```
 */
export class CtlFile extends BaseNode {
  readonly #handler: CtlHandler;
  readonly #maxWrite: number;

  constructor(name: string, handler: CtlHandler, options: CtlFileOptions = {}) {
    super(name, { ...options, mode: DirMode.APPEND | (options.perm ?? 0o660) });
    this.#handler = handler;
    this.#maxWrite = options.maxWrite ?? 64 * 1024;
  }

  override open(flags: OpenFlags, _ctx: RequestContext): OpenFile {
    this.checkAccess(flags, { read: true, write: true, ignoreTruncate: true });
    let reply: Uint8Array = new Uint8Array(0);
    let pending: Promise<void> | undefined;

    const finish = (result: string, by: string): void => {
      reply = toBytes(result === "" || result.endsWith("\n") ? result : `${result}\n`);
      this.markWritten(by);
    };
    const fail = (err: unknown): never => {
      reply = toBytes(`${toNineError(err).message}\n`);
      throw err;
    };
    const run = (command: string, ctx: RequestContext): MaybePromise<void> => {
      let result: MaybePromise<string>;
      try {
        result = this.#handler(command, ctx);
      } catch (err) {
        return fail(err);
      }
      const by = ctx.caller.subject;
      return isPromiseLike(result) ? result.then((r) => finish(r, by), fail) : finish(result, by);
    };
    /** Remembers `work` as the fid's pending command so reads and later writes wait for it. */
    const track = (work: Promise<void>): Promise<void> => {
      const settled = work.then(
        () => undefined,
        () => undefined,
      );
      pending = settled;
      void settled.then(() => {
        if (pending === settled) pending = undefined;
      });
      return work;
    };

    return {
      read: (offset, count) => {
        if (pending === undefined) return readAt(reply, offset, count);
        return pending.then(() => readAt(reply, offset, count));
      },
      write: (_offset, data, ctx) => {
        if (!flags.write) throw new PermissionError(`write: ${this.name} is not open for writing`);
        let command: string;
        try {
          command = this.#parse(data);
        } catch (err) {
          return fail(err);
        }
        const n = data.length;
        if (pending === undefined) {
          const done = run(command, ctx);
          if (!isPromiseLike(done)) return n;
          return track(done).then(() => n);
        }
        return track(pending.then(() => run(command, ctx))).then(() => n);
      },
    };
  }

  #parse(data: Uint8Array): string {
    if (data.length > this.#maxWrite) {
      throw new TooBigError(`command of ${data.length} bytes to ${this.name}, limit ${this.#maxWrite}`);
    }
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(data);
    } catch {
      throw new InvalidError(`command to ${this.name} is not UTF-8`);
    }
    const command = text.replace(/[\r\n]+$/, "");
    if (command.trim() === "") throw new InvalidError("empty command");
    return command;
  }
}
