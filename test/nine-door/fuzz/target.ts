/**
 * The fuzz target: the real appliance (what ships), booted on a temporary
 * state directory and served on 127.0.0.1 with an ephemeral port, plus a
 * queen ticket for it. Shared by the fuzz test and `npm run fuzz`.
 * @module
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listen, type Listener } from "../../../nine-door/index.ts";
import { Appliance, generateKeyPair, mintTicket } from "../../../root-task/index.ts";

/** A running appliance to fuzz. */
export interface FuzzTarget {
  readonly app: Appliance;
  readonly listener: Listener;
  readonly port: number;
  /** A queen ticket the appliance accepts. */
  readonly ticket: string;
  close(): Promise<void>;
}

/**
 * Boots the appliance and listens on 127.0.0.1:0.
 *
 * @example
 * ```ts
 * const target = await startAppliance();
 * try { await fuzzServer({ port: target.port, aname: target.ticket, frames: 1000, seed: 1 }); }
 * finally { await target.close(); }
 * ```
 */
export async function startAppliance(): Promise<FuzzTarget> {
  const stateDir = await mkdtemp(join(tmpdir(), "cohesix-fuzz-"));
  const queen = await generateKeyPair();
  const app = await Appliance.boot({ board: "host", stateDir, queenPublicKey: queen.publicKey });
  const listener = await listen("tcp!127.0.0.1!0", (conn, peer) => app.server.accept(conn, peer.remote));
  const port = listener.address.kind === "unix" ? 0 : listener.address.port;
  const ticket = mintTicket({ role: "queen", sub: "queen" }, queen.privateKey, { ttlS: 24 * 3600 });
  return {
    app,
    listener,
    port,
    ticket,
    async close() {
      await listener.close();
      app.shutdown("fuzz done");
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}
