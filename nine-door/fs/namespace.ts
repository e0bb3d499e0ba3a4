/**
 * Per-session namespaces: a root node plus binds. The server keeps one
 * `Namespace` per session (`fork()` of the appliance's) and walks each Twalk
 * name with `step`, so binds made by one session never show in another.
 * @module
 */
import { InvalidError, NineError, NotFoundError } from "../errors.ts";
import { checkName } from "./base.ts";
import { normalisePath as normaliseAny, parentPath as parentOf } from "./path.ts";
import type { MaybePromise, Node, NodeStat, OpenFile, OpenFlags, RequestContext } from "./node.ts";
import type { Qid } from "../wire/types.ts";

/** Where a walk stands: the node and the absolute path it was reached by. */
export interface Position {
  readonly node: Node;
  /** Absolute, normalised (`/`, `/worker/worker-1`). */
  readonly path: string;
}

/** One bind: walking `to` yields the node at `from`. */
export interface Bind {
  readonly from: string;
  readonly to: string;
}

/** How many binds one walk may pass through before it is called a loop. */
const MAX_BIND_DEPTH = 8;

/**
 * A root node plus binds, per Plan 9 simplified: `bind(from, to)` makes
 * walking `to` yield the node at `from` (replace, never union). Binds are
 * kept by path and resolved when walked, so a bind of a worker's directory
 * follows that worker: once it is gone the bound name answers `not found`.
 * `to` need not exist (its parent must), which is how
 * `{"bind":{"from":"/worker/worker-1","to":"/w1"}}` adds `/w1`; `list`
 * shows such names. A bound node appears under the name it is bound to.
 *
 * `..` is lexical: the parent path, re-resolved from the root; `..` at the
 * root answers `invalid: walk above the root`. `.` stays put.
 *
 * Concurrency: binds change synchronously; a walk in progress may see a bind
 * made while it was waiting on a provider.
 *
 * @example
 * ```ts
 * const ns = new Namespace(root).fork();   // one per session
 * ns.bind("/worker/worker-1", "/w1");
 * const telemetry = await ns.walkPath("/w1/telemetry", ctx);
 * let at = ns.attach();                     // what the server keeps per fid
 * at = await ns.step(at, "w1", ctx);        // { node, path: "/w1" }
 * ```
 */
export class Namespace {
  /** The node at `/`. */
  readonly root: Node;
  /** to → from, both normalised. */
  readonly #binds: Map<string, string>;

  constructor(root: Node, options: { binds?: Iterable<Bind> } = {}) {
    this.root = root;
    this.#binds = new Map();
    for (const b of options.binds ?? []) this.bind(b.from, b.to);
  }

  /**
   * The position an attach starts at: the root, path `/`.
   *
   * @example
   * ```ts
   * const at = ns.attach(); // { node: ns.root, path: "/" }
   * ```
   */
  attach(): Position {
    return { node: this.root, path: "/" };
  }

  /**
   * Makes walking `to` yield the node at `from`, replacing an earlier bind
   * on `to`. Both paths are absolute; `..` anywhere, `to` = `/`, or a `from`
   * inside `to` (a loop) answer `invalid:`. Existence is checked when
   * walked, not here (walk `from` first to refuse a missing source).
   *
   * @example
   * ```ts
   * ns.bind("/worker/worker-1", "/w1");
   * ```
   */
  bind(from: string, to: string): void {
    const source = normaliseBindPath(from, "from");
    const target = normaliseBindPath(to, "to");
    if (target === "/") throw new InvalidError("bind onto the root");
    if (source === target || source.startsWith(`${target}/`)) {
      throw new InvalidError(`bind loop: ${source} onto ${target}`);
    }
    this.#binds.set(target, source);
  }

  /**
   * Removes the bind on `to`; throws `not found: <to>` if there is none.
   *
   * @example
   * ```ts
   * ns.unbind("/w1");
   * ```
   */
  unbind(to: string): void {
    const target = normaliseBindPath(to, "to");
    if (!this.#binds.delete(target)) throw new NotFoundError(`no bind on ${target}`);
  }

  /**
   * The binds in force, oldest first.
   *
   * @example
   * ```ts
   * ns.binds(); // [{ from: "/worker/worker-1", to: "/w1" }]
   * ```
   */
  binds(): Bind[] {
    return [...this.#binds].map(([to, from]) => ({ from, to }));
  }

  /**
   * A copy with the same root and binds, for a new session; later binds on
   * either do not affect the other.
   *
   * @example
   * ```ts
   * const session = appliance.fork();
   * ```
   */
  fork(): Namespace {
    return new Namespace(this.root, { binds: this.binds() });
  }

  /**
   * Walks one name from `at`, honouring binds. Without a bind on the result
   * path this is one `walk` of the provider (no re-resolution). `..` goes to
   * the parent path, re-resolved from the root.
   *
   * @example
   * ```ts
   * const proc = await ns.step(ns.attach(), "proc", ctx); // { path: "/proc" }
   * const back = await ns.step(proc, "..", ctx);          // { path: "/" }
   * ```
   */
  step(at: Position, name: string, ctx: RequestContext): Promise<Position> {
    return this.#step(at, name, ctx, 0);
  }

  /**
   * Resolves an absolute path to a position, honouring binds.
   *
   * @example
   * ```ts
   * const at = await ns.resolve("/w1/telemetry", ctx); // at.path === "/w1/telemetry"
   * ```
   */
  resolve(path: string, ctx: RequestContext): Promise<Position> {
    return this.#resolve(normalisePath(path), ctx, 0);
  }

  /**
   * Resolves an absolute path to its node, honouring binds.
   *
   * @example
   * ```ts
   * const boot = await ns.walkPath("/proc/boot", ctx);
   * ```
   */
  async walkPath(path: string, ctx: RequestContext): Promise<Node> {
    return (await this.resolve(path, ctx)).node;
  }

  /**
   * The entries of the directory at `at`, with binds applied: a bound name
   * shows the bound node (under the bound name), and a bind onto a name the
   * directory lacks adds it. Binds whose source is gone are left out.
   *
   * @example
   * ```ts
   * (await ns.list(ns.attach(), ctx)).map((n) => n.name); // [..., "w1"]
   * ```
   */
  async list(at: Position, ctx: RequestContext): Promise<readonly Node[]> {
    const children = await at.node.list(ctx);
    if (this.#binds.size === 0) return children;
    const bound = [...this.#binds.keys()].filter((to) => parentOf(to) === at.path);
    if (bound.length === 0) return children;
    const out = [...children];
    for (const to of bound) {
      const name = to.slice(to.lastIndexOf("/") + 1);
      let node: Node;
      try {
        node = (await this.#step(at, name, ctx, 0)).node;
      } catch (err) {
        if (err instanceof NineError) continue;
        throw err;
      }
      const i = out.findIndex((n) => n.name === name);
      if (i >= 0) out[i] = node;
      else out.push(node);
    }
    return out;
  }

  async #step(at: Position, name: string, ctx: RequestContext, depth: number): Promise<Position> {
    if (name === ".") return at;
    if (name === "..") {
      if (at.path === "/") throw new InvalidError("walk above the root");
      return this.#resolve(parentOf(at.path), ctx, depth);
    }
    checkName(name);
    const path = at.path === "/" ? `/${name}` : `${at.path}/${name}`;
    const from = this.#binds.size === 0 ? undefined : this.#binds.get(path);
    if (from === undefined) return { node: await at.node.walk(name, ctx), path };
    if (depth >= MAX_BIND_DEPTH) throw new InvalidError(`bind loop: ${path}`);
    const source = await this.#resolve(from, ctx, depth + 1);
    return { node: renamed(source.node, name), path };
  }

  async #resolve(path: string, ctx: RequestContext, depth: number): Promise<Position> {
    let at = this.attach();
    if (path === "/") return at;
    for (const name of path.slice(1).split("/")) at = await this.#step(at, name, ctx, depth);
    return at;
  }
}

/** `/a//b/./c/` → `/a/b/c`; `..` is applied lexically and may not climb above `/`. */
function normalisePath(path: string): string {
  return normaliseAny(path, { above: () => "walk above the root", checkName });
}

function normaliseBindPath(path: string, what: string): string {
  if (path.split("/").includes("..")) throw new InvalidError(`bind ${what} may not contain "..": ${path}`);
  return normalisePath(path);
}

/** `node` as seen under another name (a bind target); everything else is the node's. */
function renamed(node: Node, name: string): Node {
  return node.name === name ? node : new BoundNode(node, name);
}

class BoundNode implements Node {
  readonly name: string;
  readonly #node: Node;

  constructor(node: Node, name: string) {
    this.#node = node;
    this.name = name;
  }

  get mode(): number {
    return this.#node.mode;
  }

  get qid(): Qid {
    return this.#node.qid;
  }

  stat(): NodeStat {
    return this.#node.stat();
  }

  walk(name: string, ctx: RequestContext): MaybePromise<Node> {
    return this.#node.walk(name, ctx);
  }

  list(ctx: RequestContext): MaybePromise<readonly Node[]> {
    return this.#node.list(ctx);
  }

  open(flags: OpenFlags, ctx: RequestContext): MaybePromise<OpenFile> {
    return this.#node.open(flags, ctx);
  }
}
