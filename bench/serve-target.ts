/**
 * The NineDoor bench target: a child process serving a small tree over TCP
 * so the server has its own process (and core) while the bench client runs.
 *
 * Tree: `/meta` (a small file for walk/getattr/clunk cycles) and `/big`
 * (a read-only StaticFile of `--size` bytes for bulk reads). Every attach is
 * accepted as the queen. Prints `READY tcp!HOST!PORT` once listening; exits
 * 0 on SIGTERM/SIGINT (so `node --cpu-prof` writes its profile).
 *
 * @example
 * ```sh
 * node scripts/run-ts.mjs bench/serve-target.ts --size 134217728 --listen tcp!127.0.0.1!0
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { Directory, NineServer, StaticFile, listen } from "../nine-door/index.ts";

const { values } = parseArgs({
  options: { size: { type: "string", default: String(128 << 20) }, listen: { type: "string", default: "tcp!127.0.0.1!0" } },
});
const size = Number(values.size);
if (!Number.isSafeInteger(size) || size < 0) throw new Error(`serve-target: --size must be a byte count, got ${values.size}`);

const big = new Uint8Array(size);
for (let i = 0; i < size; i += 4096) big[i] = i & 0xff;
const root = new Directory("/", {
  children: [new StaticFile("meta", "cohesix bench metadata file\n"), new StaticFile("big", big)],
});
const server = new NineServer({ root, attach: () => ({ caller: { role: "queen", subject: "queen" } }) });
const listener = await listen(values.listen!, (conn, peer) => server.accept(conn, peer.remote));
process.stdout.write(`READY ${listener.dialString}\n`);

const stop = (): void => {
  server.close();
  void listener.close().finally(() => process.exit(0));
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
