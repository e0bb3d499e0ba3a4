/**
 * The bridge: the GPUs as a 9P tree, leases and job queues behind it, a
 * listener in front, and bridge tickets at the door.
 * @module
 */
import { existsSync } from "node:fs";
import { basename, dirname } from "node:path";
import {
  AppendLog,
  CtlFile,
  Directory,
  NineServer,
  NotFoundError,
  PermissionError,
  StaticFile,
  InvalidError,
  certificateFingerprint,
  listen,
  parseListenAddress,
  type Attachment,
  type AttachRequest,
  type Listener,
  type MaybePromise,
  type Node,
  type RequestContext,
} from "../nine-door/index.ts";
import { keyId, mintTicket, publicKeyOf, readPrivateKey, verifyTicket, writeKeyPair } from "../root-task/index.ts";
import { detectBackend, type BackendChoice } from "./detect.ts";
import { JobRunner, parseJobDescriptor, type JobLimits } from "./jobs.ts";
import { LeaseBook, type LeaseLimits } from "./leases.ts";
import type { SimBackendOptions } from "./sim.ts";
import { infoRecord, type GpuBackend, type GpuInfo } from "./types.ts";

/** The ticket role that may attach to the bridge. */
export const BRIDGE_ROLE = "bridge";
/** The key file stem in the config directory: `bridge.key` and `bridge.pub`. */
export const BRIDGE_KEY_NAME = "bridge";

/**
 * Options of {@link startBridge}.
 *
 * @example
 * ```ts
 * const opts: BridgeOptions = { listen: "127.0.0.1:0", backend: "sim", key: `${configDir()}/bridge.key` };
 * ```
 */
export interface BridgeOptions {
  /** `HOST:PORT` or a dial string (`tcp!…`, `tls!…`); port 0 picks a free port. */
  readonly listen: string;
  /** A backend, or how to choose one. Default `auto`. */
  readonly backend?: GpuBackend | BackendChoice;
  /** The real backend's job executor (`--executor`). */
  readonly executor?: string | readonly string[];
  /** Options for a simulated backend chosen by `backend: "sim"` or `auto`. */
  readonly sim?: SimBackendOptions;
  /**
   * The bridge's private key file; its public half verifies tickets. Made
   * (with `<stem>.pub` beside it) when missing, unless `createKey` is false.
   */
  readonly key?: string;
  /** Make the key pair at `key` when it does not exist. Default true. */
  readonly createKey?: boolean;
  /** Public keys trusted for bridge tickets, instead of (or besides) `key`'s. */
  readonly trustedKeys?: readonly Uint8Array[];
  /** PEM key and certificate: serve TLS (clients pin the certificate's fingerprint). */
  readonly tls?: { readonly key: string; readonly cert: string };
  readonly leaseLimits?: Partial<LeaseLimits>;
  readonly jobLimits?: Partial<JobLimits>;
  /** Diagnostic lines (backend choice, key creation). Default: none. */
  readonly log?: (line: string) => void;
  /** The clock for records, ms since the epoch. Default `Date.now`. */
  readonly now?: () => number;
}

/**
 * A serving bridge.
 *
 * @example
 * ```ts
 * const bridge = await startBridge({ listen: "127.0.0.1:0", backend: "sim", key });
 * console.log(`READY ${bridge.dialString}`);
 * await bridge.stop();
 * ```
 */
export interface RunningBridge {
  /** `tcp!HOST!PORT` (or `tls!…`) with the real port. */
  readonly dialString: string;
  readonly listener: Listener;
  readonly server: NineServer;
  readonly backend: GpuBackend;
  /** Why this backend was chosen. */
  readonly backendReason: string;
  readonly gpus: readonly GpuInfo[];
  readonly leases: LeaseBook;
  /** The tree served (for in-process use without a socket). */
  readonly root: Node;
  /** The public keys that verify bridge tickets. */
  readonly trustedKeys: readonly Uint8Array[];
  /** The TLS certificate's SHA-256 fingerprint, for clients to pin. */
  readonly fingerprint: string | undefined;
  /** Stops accepting, ends sessions and jobs, forgets leases. */
  stop(reason?: string): Promise<void>;
}

/**
 * Reads the bridge key pair at `path` (`…/bridge.key`), making it first
 * when missing and `create` is not false. Returns the private and public
 * keys and whether they were made now.
 *
 * @example
 * ```ts
 * const { privateKey, created } = await ensureBridgeKey(join(configDir(), "bridge.key"));
 * ```
 */
export async function ensureBridgeKey(path: string, options: { create?: boolean } = {}): Promise<{ privateKey: Uint8Array; publicKey: Uint8Array; created: boolean }> {
  if (!existsSync(path)) {
    if (options.create === false) throw new NotFoundError(`bridge key ${path} does not exist: start \`cohesix gpu-bridge\` once to make it, or pass --key`);
    const name = basename(path).replace(/\.key$/, "");
    const written = await writeKeyPair(dirname(path), { name });
    return { privateKey: written.privateKey, publicKey: written.publicKey, created: true };
  }
  const privateKey = await readPrivateKey(path);
  return { privateKey, publicKey: publicKeyOf(privateKey), created: false };
}

/**
 * Mints a ticket that attaches to the bridge: role `bridge`, signed by the
 * bridge's private key. The appliance passes it as the 9P `aname`.
 *
 * @example
 * ```ts
 * const ticket = mintBridgeTicket(await readPrivateKey(join(configDir(), "bridge.key")), { subject: "appliance" });
 * const top = await client.attach({ uname: "bridge", aname: ticket });
 * ```
 */
export function mintBridgeTicket(privateKey: Uint8Array, options: { subject?: string; ttlS?: number; now?: number } = {}): string {
  return mintTicket({ role: BRIDGE_ROLE, sub: options.subject ?? "appliance" }, privateKey, {
    ttlS: options.ttlS ?? 86_400,
    ...(options.now === undefined ? {} : { now: options.now }),
  });
}

/**
 * Starts a bridge: picks the backend, lists the GPUs, builds the tree
 * (`/<gpu-id>/{info,ctl,lease,job,status}`), and listens. Attach requires a
 * bridge ticket in `aname`, verified against `trustedKeys` and `key`'s
 * public half, over TCP and TLS alike.
 *
 * @example
 * ```ts
 * const bridge = await startBridge({ listen: "127.0.0.1:0", backend: "sim", key: "/tmp/keys/bridge.key" });
 * const client = await NineClient.dial(bridge.dialString);
 * const top = await client.attach({ aname: mintBridgeTicket((await ensureBridgeKey("/tmp/keys/bridge.key")).privateKey) });
 * console.log(await top.readText("GPU-0/info"));
 * ```
 */
export async function startBridge(options: BridgeOptions): Promise<RunningBridge> {
  const log = options.log ?? (() => {});
  let listenAddr = options.listen;
  const parsed = parseListenAddress(listenAddr);
  if (options.tls !== undefined && parsed.kind === "tcp") listenAddr = `tls!${parsed.host}!${parsed.port}`;
  if (parsed.kind === "tls" && options.tls === undefined) throw new InvalidError(`listen ${listenAddr}: a tls! address needs tls key and certificate`);

  const trusted = [...(options.trustedKeys ?? [])];
  if (options.key !== undefined) {
    const pair = await ensureBridgeKey(options.key, { create: options.createKey !== false });
    if (pair.created) log(`made bridge key ${options.key} (key id ${keyId(pair.publicKey)})`);
    trusted.push(pair.publicKey);
  }
  if (trusted.length === 0) throw new InvalidError("the bridge needs a key: pass key (a bridge.key path) or trustedKeys");

  let backend: GpuBackend;
  let reason: string;
  if (typeof options.backend === "object") {
    backend = options.backend;
    reason = "backend given by the caller";
  } else {
    const detected = await detectBackend(options.backend ?? "auto", {
      ...(options.executor === undefined ? {} : { nvml: { executor: options.executor } }),
      ...(options.sim === undefined ? {} : { sim: options.sim }),
    });
    backend = detected.backend;
    reason = detected.reason;
  }
  const gpus = await backend.listGpus();
  log(`backend ${backend.kind}: ${reason}`);

  const { root, leases, runners, logs } = buildTree(backend, gpus, options);
  const server = new NineServer({ root, attach: (req) => attachBridge(req, trusted) });
  const listener = await listen(listenAddr, (conn, peer) => server.accept(conn, peer.remote), options.tls ? { tls: { key: options.tls.key, cert: options.tls.cert } } : {});
  // Said only once the listen succeeded: a port in use serves nothing.
  log(`serving ${gpus.map((g) => `${g.id} (${g.name}, ${g.memory_mb} MiB)`).join(", ") || "no GPUs"} on ${listener.dialString}`);
  let stopping: Promise<void> | undefined;
  return {
    dialString: listener.dialString,
    listener,
    server,
    backend,
    backendReason: reason,
    gpus,
    leases,
    root,
    trustedKeys: trusted,
    fingerprint: options.tls ? certificateFingerprint(options.tls.cert) : undefined,
    stop(why = "bridge stopped") {
      stopping ??= (async () => {
        await listener.close();
        for (const r of runners.values()) r.close(why);
        leases.close();
        for (const l of logs) l.close(why);
        server.close();
      })();
      return stopping;
    },
  };
}

function attachBridge(request: AttachRequest, trusted: readonly Uint8Array[]): Attachment {
  if (request.aname === "") {
    throw new PermissionError("attach needs a bridge ticket in aname: mint one with the bridge key (~/.config/cohesix/bridge.key)");
  }
  const ticket = verifyTicket(request.aname, { keys: (role) => (role === BRIDGE_ROLE ? trusted : []) });
  return { caller: { role: ticket.role, subject: ticket.sub } };
}

/** A root that names the GPUs it has when a walk misses. */
class GpuRoot extends Directory {
  override walk(name: string, ctx: RequestContext): MaybePromise<Node> {
    try {
      return super.walk(name, ctx);
    } catch (err) {
      if (err instanceof NotFoundError) {
        const names = this.list(ctx) as readonly Node[];
        throw new NotFoundError(`unknown GPU ${name}: this bridge serves ${names.map((n) => n.name).join(", ") || "no GPUs"}`);
      }
      throw err;
    }
  }
}

function buildTree(backend: GpuBackend, gpus: readonly GpuInfo[], options: BridgeOptions) {
  const now = options.now ?? Date.now;
  const leaseLogs = new Map<string, AppendLog>();
  const runners = new Map<string, JobRunner>();
  const logs: AppendLog[] = [];
  const leases = new LeaseBook({
    backend,
    gpus,
    ...(options.leaseLimits === undefined ? {} : { limits: options.leaseLimits }),
    now,
    onRecord: (record) => leaseLogs.get(record.gpu_id)?.append(`${JSON.stringify(record)}\n`),
    onRelease: (lease, why) => runners.get(lease.gpuId)?.cancelWorker(lease.worker, why),
  });
  const jobLimits = options.jobLimits ?? {};
  const root = new GpuRoot("/");
  for (const gpu of gpus) {
    const leaseLog = new AppendLog("lease", { blockingReads: true, retainBytes: 256 * 1024 });
    const status = new AppendLog("status", { blockingReads: true, retainBytes: 1 << 20 });
    leaseLogs.set(gpu.id, leaseLog);
    logs.push(leaseLog, status);
    const runner = new JobRunner(gpu, { backend, leases, limits: jobLimits, now, onStatus: (s) => status.append(`${JSON.stringify(s)}\n`) });
    runners.set(gpu.id, runner);
    const job = new CtlFile(
      "job",
      (text) => {
        const parsed = parseJobDescriptor(text, { maxPayloadBytes: jobLimits.maxPayloadBytes ?? 256 * 1024, maxTimeoutMs: jobLimits.maxTimeoutMs ?? 600_000 });
        runner.submit(parsed);
        return JSON.stringify({ ok: true, job: parsed.descriptor.job, state: "QUEUED" });
      },
      { maxWrite: 16 << 20 },
    );
    root.add(
      new Directory(gpu.id, {
        children: [
          new StaticFile("info", `${JSON.stringify(infoRecord(gpu))}\n`),
          new CtlFile("ctl", (text) => leases.command(gpu.id, text)),
          leaseLog,
          job,
          status,
        ],
      }),
    );
  }
  return { root, leases, runners, logs };
}
