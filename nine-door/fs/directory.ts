/**
 * Directories: a fixed set of children in insertion order, optionally joined
 * by generated entries computed on every walk and list (`/worker/`, whose
 * entries come and go with the workers).
 * @module
 */
import { DirMode } from "../wire/types.ts";
import { Errno, InvalidError, NotFoundError } from "../errors.ts";
import { BaseNode, checkName, isPromiseLike } from "./base.ts";
import type { NodeOptions } from "./base.ts";
import type { MaybePromise, Node, RequestContext } from "./node.ts";

/** Options of `new Directory(name, options)`. */
export interface DirectoryOptions extends NodeOptions {
  /** Initial children, added in order. */
  readonly children?: Iterable<Node>;
  /**
   * Generated entries, asked for on every `walk` miss and every `list`; they
   * follow the fixed children, and a fixed child hides a generated one of the
   * same name. Must return the same node object for the same entry each time
   * so its qid stays stable. May run concurrently with itself.
   */
  readonly entries?: (ctx: RequestContext) => MaybePromise<Iterable<Node>>;
}

/**
 * A directory (mode `DirMode.DIR | perm`, perm defaults to `0o555`).
 * `walk` of a missing name throws `not found: <name>`; `list` returns the
 * fixed children in insertion order, then the generated ones. `add` and
 * `remove` bump the directory's version.
 *
 * Concurrency: `add`/`remove` are synchronous, so a `walk` or `list` sees
 * either the old or the new set of children, never a mix.
 *
 * @example
 * ```ts
 * const root = new Directory("/", {
 *   children: [new Directory("proc", { children: [new StaticFile("boot", "cohesix 0.1\n")] })],
 * });
 * const workers = root.add(new Directory("worker", { entries: () => registry.nodes() }));
 * ```
 */
export class Directory extends BaseNode {
  readonly #children = new Map<string, Node>();
  readonly #entries: DirectoryOptions["entries"];

  constructor(name: string, options: DirectoryOptions = {}) {
    super(name, { ...options, mode: DirMode.DIR | (options.perm ?? 0o555) });
    this.#entries = options.entries;
    for (const child of options.children ?? []) this.#insert(child);
  }

  /**
   * Adds a fixed child and returns it (so trees build in one expression).
   * Throws `invalid: already exists: <name>` (EEXIST) for a taken name.
   *
   * @example
   * ```ts
   * const proc = root.add(new Directory("proc"));
   * proc.add(new StaticFile("boot", banner));
   * ```
   */
  add<T extends Node>(node: T): T {
    this.#insert(node);
    this.markWritten();
    return node;
  }

  /**
   * Removes the fixed child called `name`; returns it, or `undefined` if there
   * was none. Open fids on it keep working; new walks no longer find it.
   *
   * @example
   * ```ts
   * workers.remove("worker-3");
   * ```
   */
  remove(name: string): Node | undefined {
    const node = this.#children.get(name);
    if (node === undefined) return undefined;
    this.#children.delete(name);
    this.markWritten();
    return node;
  }

  /**
   * The fixed child called `name`, or `undefined` (generated entries are not
   * consulted: they need a request context).
   *
   * @example
   * ```ts
   * const boot = proc.get("boot");
   * ```
   */
  get(name: string): Node | undefined {
    return this.#children.get(name);
  }

  override walk(name: string, ctx: RequestContext): MaybePromise<Node> {
    const child = this.#children.get(name);
    if (child !== undefined) return child;
    const entries = this.#entries;
    if (entries === undefined) throw new NotFoundError(name);
    const generated = entries(ctx);
    const find = (nodes: Iterable<Node>): Node => {
      for (const node of nodes) if (node.name === name) return node;
      throw new NotFoundError(name);
    };
    return isPromiseLike(generated) ? generated.then(find) : find(generated);
  }

  override list(ctx: RequestContext): MaybePromise<readonly Node[]> {
    const fixed = [...this.#children.values()];
    const entries = this.#entries;
    if (entries === undefined) return fixed;
    const merge = (nodes: Iterable<Node>): readonly Node[] => {
      const seen = new Set(this.#children.keys());
      const out = fixed;
      for (const node of nodes) {
        if (seen.has(node.name)) continue;
        seen.add(node.name);
        out.push(node);
      }
      return out;
    };
    const generated = entries(ctx);
    return isPromiseLike(generated) ? generated.then(merge) : merge(generated);
  }

  #insert(node: Node): void {
    checkName(node.name);
    if (this.#children.has(node.name)) {
      throw new InvalidError(`already exists: ${node.name}`, { errno: Errno.EEXIST });
    }
    this.#children.set(node.name, node);
  }
}
