/**
 * Runs the appliance on a listening address: what `cohesix serve` and the
 * guest's init program call.
 * @module
 */
import { listen, type Listener } from "../nine-door/index.ts";
import { Appliance, type ApplianceOptions } from "./appliance.ts";
import { readPublicKey } from "./keys.ts";

/** Options of `serveAppliance`. */
export interface ServeOptions extends Omit<ApplianceOptions, "queenPublicKey"> {
  /** `HOST:PORT` or a dial string; port 0 picks a free port. */
  readonly listen: string;
  /** Path of the queen's public key file. */
  readonly queenPub: string;
  /** PEM key and certificate for a `tls!HOST!PORT` listen address. */
  readonly tls?: { readonly key: string; readonly cert: string };
}

/** A running appliance and the address it serves on. */
export interface RunningAppliance {
  readonly app: Appliance;
  readonly listener: Listener;
  /** `tcp!HOST!PORT` with the real port. */
  readonly dialString: string;
  /** Stops accepting, drops sessions, marks the lifecycle OFFLINE. */
  stop(reason?: string): Promise<void>;
}

/**
 * Boots the appliance and starts serving NineDoor.
 *
 * @example
 * ```ts
 * const running = await serveAppliance({ board: "host", listen: "127.0.0.1:0", stateDir, queenPub });
 * console.log(`READY ${running.dialString}`);
 * ```
 */
export async function serveAppliance(options: ServeOptions): Promise<RunningAppliance> {
  const queenPublicKey = await readPublicKey(options.queenPub);
  const app = await Appliance.boot({ ...options, queenPublicKey });
  let listener: Listener | undefined;
  let local: Listener | undefined;
  try {
    listener = await listen(options.listen, (conn, peer) => app.server.accept(conn, peer.remote), options.tls ? { tls: { ...options.tls } } : {});
    // Workers reach NineDoor through a Unix socket in the state directory.
    local = await listen(`unix!${app.socketPath}`, (conn, peer) => app.server.accept(conn, peer.remote), { mode: 0o600 });
    app.audit(`listening on ${listener.dialString} and ${local.dialString}`);
    await app.start({ workerAddr: local.dialString });
  } catch (err) {
    await listener?.close();
    await local?.close();
    await app.shutdown("boot failed");
    throw err;
  }
  const tcp = listener;
  const unix = local;
  return {
    app,
    listener: tcp,
    dialString: tcp.dialString,
    async stop(reason = "stopped") {
      await tcp.close();
      await app.shutdown(reason);
      await unix.close();
    },
  };
}
