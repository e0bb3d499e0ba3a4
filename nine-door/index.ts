/**
 * NineDoor: a 9P2000 / 9P2000.L server and client for synthetic namespaces.
 *
 * Layers, each knowing nothing of the next one's worries:
 * - `wire`: the codec (one table of messages, frames, stat and dirent packing);
 * - `server`: sessions, fids, tags, Tflush, limits; providers plug in as `Node`s;
 * - `fs`: providers (directories, static, generated, append-only and ctl files, binds);
 * - `client`: a pipelined promise client and a reconnecting helper;
 * - `transport`: TCP, Unix, TLS (with pinning) and in-memory byte streams.
 *
 * @example
 * ```ts
 * import { NineServer, NineClient, Directory, StaticFile, listen, dial } from "../nine-door/index.ts";
 * const root = new Directory("/", { children: [new StaticFile("hello", "hi\n")] });
 * const server = new NineServer({ root, attach: () => ({ caller: { role: "queen", subject: "queen" } }) });
 * const l = await listen("tcp!127.0.0.1!0", (conn, peer) => server.accept(conn, peer.remote));
 * const client = await NineClient.connect(await dial(l.dialString));
 * const top = await client.attach({ aname: "" });
 * console.log(await top.readText("hello"));
 * ```
 * @module
 */
export * from "./errors.ts";
export * from "./wire/index.ts";
export * from "./fs/index.ts";
export * from "./transport/index.ts";
export { NineServer, type ServerStats } from "./server/server.ts";
export { Session, MIN_MSIZE, type SessionInfo } from "./server/session.ts";
export {
  defaultLimits,
  LIMIT_NAMES,
  parseLimits,
  resolveLimits,
  type AccessOp,
  type Attachment,
  type AttachRequest,
  type CountedOp,
  type Place,
  type ServerEvent,
  type ServerLimits,
  type ServerOptions,
  type SessionLimits,
  type Walker,
} from "./server/types.ts";
export { NineClient, Fid, type ConnectOptions, type FileInfo, type OpenAccess, type RpcOptions } from "./client/client.ts";
export { NoAnswerError, formatSeconds } from "./client/timeout.ts";
export { ReconnectingClient, type ReconnectOptions } from "./client/reconnect.ts";
