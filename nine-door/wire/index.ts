/**
 * The NineDoor wire layer: 9P2000 and 9P2000.L message types, the codec
 * table, frame splitting and the byte cursors the codec is built on. It
 * knows nothing about files, sessions or sockets.
 *
 * @example
 * ```ts
 * import { FrameSplitter, decodeMessage, encodeMessage } from "./nine-door/wire/index.ts";
 *
 * const frames = new FrameSplitter(8192);
 * frames.push(chunk);
 * for (let f = frames.next(); f !== undefined; f = frames.next()) {
 *   const r = decodeMessage(f);
 *   if (r.ok && r.message.type === "Tversion") {
 *     socket.write(encodeMessage({ type: "Rversion", tag: r.message.tag, msize: 8192, version: "9P2000.L" }));
 *   }
 * }
 * ```
 * @module
 */
export * from "./types.ts";
export {
  HEADER_SIZE,
  decodeDirents,
  decodeMessage,
  direntSize,
  encodeMessage,
  encodeMessageChunks,
  messageNameById,
  messageTable,
  packDirents,
  packStat,
  statSize,
  unpackStats,
  type DecodeResult,
} from "./codec.ts";
export { FrameSplitter, type FrameAllocator, type FrameRefusal } from "./frames.ts";
export { WireReader, WireWriter, stringSize } from "./buffer.ts";
