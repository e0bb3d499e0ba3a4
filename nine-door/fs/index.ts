/**
 * The namespace/provider model: the `Node` contract the server core walks,
 * embeddable defaults (`BaseNode`), ready-made providers (directories,
 * static, generated, append-only and control files) and per-session
 * namespaces with binds.
 *
 * A static file system takes a few lines:
 *
 * @example
 * ```ts
 * import { Directory, StaticFile, GeneratedFile, AppendLog, CtlFile, Namespace } from "./nine-door/fs/index.ts";
 *
 * const log = new AppendLog("queen.log", { blockingReads: true });
 * const root = new Directory("/", {
 *   children: [
 *     new Directory("proc", {
 *       children: [
 *         new StaticFile("boot", "cohesix 0.1 board=aarch64-virt\n"),
 *         new GeneratedFile("workers", () => workers.map((w) => `id=${w.id}\n`).join("")),
 *       ],
 *     }),
 *     new Directory("queen", { children: [new CtlFile("ctl", (cmd, ctx) => queen.run(cmd, ctx))] }),
 *     new Directory("log", { children: [log] }),
 *   ],
 * });
 * const session = new Namespace(root).fork();
 * log.append("spawned worker-1 role=heartbeat\n");
 * ```
 *
 * Remote subtrees (the GPU bridge's export mounted at `/gpu`) plug in as a
 * `RemoteMount`, whose `walk`/`list`/`open` forward to another 9P server
 * through a reconnecting client:
 *
 * ```ts
 * root.add(new RemoteMount("gpu", { dial: (signal) => dial(bridgeAddr, { signal }), attach: { aname: ticket } }));
 * ```
 * @module
 */
export type {
  Caller,
  MaybePromise,
  Node,
  NodeStat,
  OpenFile,
  OpenFlags,
  RequestContext,
} from "./node.ts";
export { nextQidPath, qidTypeOf } from "./qid.ts";
export { BaseNode, DEFAULT_OWNER, checkName, isPromiseLike, readAt, toBytes } from "./base.ts";
export type { BaseNodeInit, NodeOptions } from "./base.ts";
export { Directory } from "./directory.ts";
export type { DirectoryOptions } from "./directory.ts";
export { StaticFile } from "./static.ts";
export type { StaticFileOptions } from "./static.ts";
export { GeneratedFile } from "./generated.ts";
export type { Generate } from "./generated.ts";
export { AppendLog, validateJsonLines } from "./append-log.ts";
export type { AppendEvent, AppendLogOptions, AppendValidator } from "./append-log.ts";
export { CtlFile } from "./ctl.ts";
export type { CtlFileOptions, CtlHandler } from "./ctl.ts";
export { Namespace } from "./namespace.ts";
export { childPath, isWithin, normalisePath, parentPath, pathNames } from "./path.ts";
export type { NormaliseOptions } from "./path.ts";
export type { Bind, Position } from "./namespace.ts";
export { RemoteMount } from "./remote.ts";
export type { RemoteMountOptions, RemoteState, Unsubscribe } from "./remote.ts";
