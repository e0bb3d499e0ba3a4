/**
 * Runs the appliance on a listening address: what `cohesix serve` and the
 * guest's init program call.
 * @module
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { InvalidError, NotFoundError, formatDialString, listen, parseListenAddress, type Listener } from "../nine-door/index.ts";
import { Appliance, type ApplianceOptions } from "./appliance.ts";
import type { GpuBridgeConfig } from "./gpu-mount.ts";
import { readPrivateKey, readPublicKey } from "./keys.ts";
import { chooseTls, type TlsSetting } from "./tls-mode.ts";
import { readBootStateFiles, slotVersion, type UpdateLimits } from "../update/index.ts";
import { startFleet, type FleetSettings, type RunningFleet } from "./fleet-link.ts";

/**
 * The GPU bridge to mount, as files: `cohesix serve --gpu-bridge DIAL
 * [--gpu-bridge-key FILE] [--gpu-bridge-pin SHA256]`.
 *
 * @example
 * ```ts
 * const gpuBridge: GpuBridgeFiles = { dial: "127.0.0.1:5650" }; // key: ~/.config/cohesix/bridge.key
 * ```
 */
export interface GpuBridgeFiles {
  /** `HOST:PORT`, `tcp!HOST!PORT` or `tls!HOST!PORT` (from QEMU the host is 10.0.2.2). */
  readonly dial: string;
  /** The bridge's private key file; default `$XDG_CONFIG_HOME/cohesix/bridge.key` (`~/.config/…`), which `cohesix gpu-bridge` makes on first use. */
  readonly key?: string;
  /** SHA-256 fingerprint of the bridge's TLS certificate: dial with TLS and pin it. */
  readonly pin?: string;
  /**
   * Instead of a key file: where bridge tickets come from, asked at every
   * connection (the QEMU guest reads the ticket `cohesix boot` minted on
   * the host; the bridge key never enters the guest).
   */
  readonly ticket?: () => string;
}

/**
 * The bridge key `cohesix gpu-bridge` makes by default on this host, so the
 * two pair with no flags.
 *
 * @example
 * ```ts
 * defaultBridgeKeyPath({ XDG_CONFIG_HOME: "/tmp/cfg" }); // "/tmp/cfg/cohesix/bridge.key"
 * ```
 */
export function defaultBridgeKeyPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), ".config"), "cohesix", "bridge.key");
}

/** Reads the bridge key and builds the appliance's bridge configuration. */
async function bridgeConfig(files: GpuBridgeFiles): Promise<GpuBridgeConfig> {
  if (files.ticket !== undefined) return { dial: files.dial, ticket: files.ticket, ...(files.pin !== undefined ? { pin: files.pin } : {}) };
  const path = files.key ?? defaultBridgeKeyPath();
  if (!existsSync(path)) {
    throw new NotFoundError(`gpu bridge key ${path} does not exist: start \`cohesix gpu-bridge\` once on this host to make it, or pass --gpu-bridge-key FILE`);
  }
  return { dial: files.dial, key: await readPrivateKey(path), ...(files.pin !== undefined ? { pin: files.pin } : {}) };
}

/** Options of `serveAppliance`. */
export interface ServeOptions extends Omit<ApplianceOptions, "queenPublicKey" | "gpuBridge" | "network"> {
  /** The GPU bridge to mount at /gpu; key read from its file. */
  readonly gpuBridge?: GpuBridgeFiles;
  /** `HOST:PORT` or a dial string; port 0 picks a free port. */
  readonly listen: string;
  /** Path of the queen's public key file. */
  readonly queenPub: string;
  /**
   * The operator's own PEM key and certificate, used instead of the device
   * certificate when NineDoor serves TLS.
   */
  readonly tls?: { readonly key: string; readonly cert: string };
  /**
   * TLS or plain TCP (see `chooseTls`): `auto` (default) serves TLS unless
   * the address is loopback or `qemuUserNet`; `on`; `off`. Without `tls`,
   * TLS presents the device certificate from the state directory.
   */
  readonly tlsMode?: TlsSetting;
  /** The appliance runs under QEMU with user networking (the guest sets it). */
  readonly qemuUserNet?: boolean;
  /** TLS only: drops a peer whose handshake has not finished after this long. Default 10 000. */
  readonly tlsHandshakeTimeoutMs?: number;
  /**
   * A folder laid out as an A/B boot partition (`state.env`, `a/`, `b/`):
   * the host board then publishes `/update/` writing into it, running the
   * state's active slot (`cohesix serve --boot-dir DIR --release-pub FILE`).
   */
  readonly bootDir?: string;
  /** With `bootDir`: the release public key file bundles must be signed with. */
  readonly releasePub?: string;
  /** With `bootDir`: the update service's limits (docs/security.md, "Updates"). */
  readonly updateLimits?: Partial<UpdateLimits>;
  /** The fleet link (docs/fleet.md): started once the appliance serves. */
  readonly fleet?: FleetSettings;
}

/**
 * The host board's `/update/` options from a boot folder: the running slot
 * is the state's active one, its version the slot manifest's.
 */
async function hostUpdate(bootDir: string, releasePub: string | undefined, limits: Partial<UpdateLimits> | undefined): Promise<NonNullable<ApplianceOptions["update"]>> {
  if (releasePub === undefined) throw new InvalidError(`--boot-dir ${bootDir} needs --release-pub FILE: the key update bundles must be signed with`);
  const { state, refused } = await readBootStateFiles(bootDir);
  if (!state) throw new InvalidError(`--boot-dir ${bootDir} holds no whole boot state (${refused.join("; ")}): make one with cohesix image --ab`);
  const version = await slotVersion(bootDir, state.active);
  return {
    bootDir,
    runningSlot: state.active,
    runningVersion: version === "none" ? "0.0.0" : version,
    releasePub: await readPublicKey(releasePub),
    ...(limits ? { limits } : {}),
  };
}

/** A running appliance and the address it serves on. */
export interface RunningAppliance {
  readonly app: Appliance;
  readonly listener: Listener;
  /** `tcp!HOST!PORT` (`tls!…` when serving TLS) with the real port. */
  readonly dialString: string;
  /** The fleet link, when one is configured. */
  readonly fleet: RunningFleet | undefined;
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
  const asked = parseListenAddress(options.listen);
  const choice = chooseTls(options.tlsMode ?? "auto", { listen: asked, ...(options.qemuUserNet !== undefined ? { qemuUserNet: options.qemuUserNet } : {}) });
  if (!choice.tls && options.tls !== undefined) {
    throw new InvalidError(`serve ${options.listen}: a TLS key and certificate were given but TLS is off (${choice.reason}); use --tls on or a tls! address`);
  }
  const address = choice.tls && asked.kind === "tcp" ? { ...asked, kind: "tls" as const } : asked;
  const device = choice.tls && options.tls === undefined;
  const { gpuBridge, tlsMode: _mode, qemuUserNet: _qemu, tlsHandshakeTimeoutMs, bootDir, releasePub, updateLimits, fleet: fleetSettings, ...rest } = options;
  const update = bootDir !== undefined ? await hostUpdate(bootDir, releasePub, updateLimits) : undefined;
  const fleetId = fleetSettings?.id ?? rest.fleetId;
  const app = await Appliance.boot({
    ...rest,
    ...(update ? { update } : {}),
    ...(fleetId !== undefined ? { fleetId } : {}),
    queenPublicKey,
    network: { tls: choice.tls, reason: choice.reason, device },
    ...(gpuBridge ? { gpuBridge: await bridgeConfig(gpuBridge) } : {}),
  });
  const tlsKeys = options.tls ?? app.deviceCert;
  let listener: Listener | undefined;
  let local: Listener | undefined;
  let fleet: RunningFleet | undefined;
  try {
    listener = await listen(formatDialString(address), (conn, peer) => app.server.accept(conn, peer.remote), choice.tls && tlsKeys
        ? {
            tls: { key: tlsKeys.key, cert: tlsKeys.cert },
            ...(tlsHandshakeTimeoutMs !== undefined ? { handshakeTimeoutMs: tlsHandshakeTimeoutMs } : {}),
          }
        : {});
    // Workers reach NineDoor through a Unix socket in the state directory.
    local = await listen(`unix!${app.socketPath}`, (conn, peer) => app.server.accept(conn, peer.remote), { mode: 0o600 });
    app.audit(`listening on ${listener.dialString} and ${local.dialString}`);
    await app.start({ workerAddr: local.dialString });
    if (fleetSettings) fleet = await startFleet(app, fleetSettings);
  } catch (err) {
    await fleet?.close();
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
    fleet,
    async stop(reason = "stopped") {
      await fleet?.close();
      await tcp.close();
      await app.shutdown(reason);
      await unix.close();
    },
  };
}
