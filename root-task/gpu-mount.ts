/**
 * The appliance's side of the GPU bridge (DESIGN §5, issue 5): the bridge's
 * tree mounted at `/gpu` through a `RemoteMount` (bridge ticket minted with
 * the bridge key, TLS pinned when a pin is given), the lifecycle kept
 * DEGRADED `gpu-bridge-down` while it is away, and the root task's half of
 * leases:
 *
 * - `lease(worker, request)` writes `LEASE <worker> mem= streams= priority=
 *   ttl=` to `/<gpu>/ctl` and returns the bridge's record, or throws the
 *   bridge's refusal (`busy:`, `invalid:`, `not found:`) — called BEFORE the
 *   spawn is committed;
 * - `release(worker, gpu, reason)` writes `RELEASE <worker> <reason>` when
 *   the worker ends;
 * - one follower per leased GPU reads its `lease` file and revokes a
 *   running worker whose latest record is RELEASED (`lease ttl expired`);
 * - on every (re)connection, the leases of running workers are checked
 *   again: a bridge that restarted (and so forgot them) is asked for them
 *   anew with the time left, and a worker whose lease cannot come back is
 *   revoked.
 * @module
 */
import { setTimeout as sleep } from "node:timers/promises";
import {
  InvalidError,
  NineError,
  NotFoundError,
  RemoteMount,
  dial,
  parseDialString,
  formatDialString,
  type Node,
  type OpenFile,
  type RequestContext,
} from "../nine-door/index.ts";
import type { GpuLeaseRecord } from "../workers/index.ts";
import { guardGpuMount } from "./gpu-guard.ts";
import type { LeaseRequest } from "./queen-command.ts";
import type { WorkerState } from "./state.ts";
import { mintTicket } from "./ticket.ts";

/** The lifecycle reason shown while the bridge is away. */
export const GPU_BRIDGE_DOWN = "gpu-bridge-down";

/**
 * Where the bridge is and how to prove who we are to it.
 *
 * @example
 * ```ts
 * const bridge: GpuBridgeConfig = { dial: "tcp!10.0.2.2!5650", key: await readPrivateKey("/etc/cohesix/bridge.key") };
 * ```
 */
export interface GpuBridgeConfig {
  /** `HOST:PORT`, `tcp!HOST!PORT` or `tls!HOST!PORT`; with `pin`, a TCP address is dialled with TLS. */
  readonly dial: string;
  /** The bridge's private key: a fresh bridge ticket is signed with it at every connection. */
  readonly key?: Uint8Array;
  /**
   * Instead of the key: where bridge tickets come from, asked at every
   * connection (a QEMU guest holds a ticket minted on the host by `cohesix
   * boot`, never the key). A ticket that has expired is refused by the bridge.
   */
  readonly ticket?: () => string;
  /** SHA-256 fingerprint of the bridge's TLS certificate. */
  readonly pin?: string;
  /** First redial delay (doubles up to 2 s). Default 100 ms. */
  readonly initialDelayMs?: number;
}

/** What the mount needs from the appliance. */
export interface GpuMountHost {
  audit(line: string): void;
  /** DEGRADED with `reason`, or back (undefined). */
  setDegraded(reason: string | undefined): void;
  /** The workers the state says run. */
  running(): readonly WorkerState[];
  worker(id: string): WorkerState | undefined;
  revoke(id: string, reason: string): Promise<void>;
  /** The appliance runs `--policy signed-ctl` (the queen's unsigned writes below /gpu are refused). */
  readonly signedCtl?: boolean;
}

/** A `gpu-lease/v1` record as the bridge writes it (the worker API's type). */
export type BridgeLeaseRecord = GpuLeaseRecord;

const CALL_TIMEOUT_MS = 10_000;
const ROOT_TASK: RequestContext["caller"] = { role: "root-task", subject: "root-task" };

/**
 * The mounted bridge. `node` goes into the namespace at `/gpu`.
 *
 * @example
 * ```ts
 * const gpu = new GpuMount({ dial: "127.0.0.1:5650", key }, host);
 * root.add(gpu.node);
 * gpu.unavailable();                       // "gpu bridge unavailable: …" until connected
 * await gpu.lease("worker-3", { gpu_id: "GPU-0", mem_mb: 1024, streams: 1, ttl_s: 60, priority: 0 });
 * await gpu.release("worker-3", "GPU-0", "killed by queen");
 * gpu.close();
 * ```
 */
export class GpuMount {
  readonly #config: GpuBridgeConfig;
  readonly #host: GpuMountHost;
  readonly #followers = new Map<string, AbortController>();
  #mount: RemoteMount;
  #node: Node;
  #closed = false;

  constructor(config: GpuBridgeConfig, host: GpuMountHost) {
    if ((config.key === undefined) === (config.ticket === undefined)) throw new InvalidError("gpu bridge: give either the bridge key or a ticket source");
    this.#config = config;
    this.#host = host;
    this.#mount = this.#makeMount();
    this.#node = this.#guard(this.#mount);
  }

  /** The guarded mount, served at `/gpu`. */
  get node(): Node {
    return this.#node;
  }

  /** True while the bridge is attached. */
  get connected(): boolean {
    return this.#mount.connected;
  }

  /** Why a GPU spawn cannot happen now, or undefined when it can. */
  unavailable(): string | undefined {
    if (this.#closed) return "no gpu bridge mounted";
    if (!this.#mount.connected) return `gpu bridge unavailable: ${this.#mount.state === "connecting" ? "connecting" : this.#mount.reason}`;
    return undefined;
  }

  /**
   * Drops the connection and mounts afresh (a redial now, backoff reset).
   * Returns the new node, to put at `/gpu` in place of the old one.
   */
  remount(): Node {
    this.#mount.close();
    this.#mount = this.#makeMount();
    this.#node = this.#guard(this.#mount);
    return this.#node;
  }

  /**
   * Asks the bridge for `worker`'s lease. Resolves with the ACTIVE record;
   * rejects with the bridge's refusal, typed (`busy:` fully leased,
   * `invalid:`, `not found:` unknown GPU) or `busy:` while it is away.
   */
  async lease(worker: string, request: LeaseRequest, ttlS = request.ttl_s): Promise<BridgeLeaseRecord> {
    const line = `LEASE ${worker} mem=${request.mem_mb} streams=${request.streams} priority=${request.priority} ttl=${ttlS}`;
    const reply = await this.#ctl(request.gpu_id, line);
    const parsed = JSON.parse(reply) as { ok?: boolean; lease?: BridgeLeaseRecord };
    if (!parsed.lease) throw new NineError("io", `LEASE ${worker} on ${request.gpu_id}: the bridge answered ${reply.slice(0, 200)}`);
    this.#follow(request.gpu_id);
    return parsed.lease;
  }

  /** Tells the bridge `worker` is done with its lease on `gpuId`; a lease already gone is fine. */
  async release(worker: string, gpuId: string, reason: string): Promise<void> {
    const why = reason.replace(/\s+/g, " ").slice(0, 200) || "released";
    try {
      await this.#ctl(gpuId, `RELEASE ${worker} ${why}`);
    } catch (err) {
      if (err instanceof NotFoundError) return;
      throw err;
    }
  }

  /** Stops following, unmounts. */
  close(): void {
    this.#closed = true;
    for (const f of this.#followers.values()) f.abort();
    this.#followers.clear();
    this.#mount.close();
  }

  #guard(mount: RemoteMount): Node {
    return guardGpuMount(mount, {
      onRefused: (caller, path, e) => this.#host.audit(`refused ${caller.role} ${caller.subject} write ${path}: ${e.message}`),
      signedCtl: this.#host.signedCtl ?? false,
    });
  }

  #makeMount(): RemoteMount {
    const config = this.#config;
    let addr = parseDialString(config.dial);
    if (config.pin !== undefined && addr.kind === "tcp") addr = { ...addr, kind: "tls" };
    const target = formatDialString(addr);
    const mount = new RemoteMount("gpu", {
      dial: (signal) => dial(target, { signal, ...(config.pin !== undefined ? { pin: config.pin } : {}) }),
      // A fresh ticket at every (re)connection: a long-lived appliance
      // outlives any one ticket's expiry.
      attach: {
        uname: "bridge",
        get aname() {
          return config.ticket ? config.ticket() : mintTicket({ role: "bridge", sub: "appliance" }, config.key!, { ttlS: 3600 });
        },
      },
      connectTimeoutMs: 3000,
      initialDelayMs: config.initialDelayMs ?? 100,
      maxDelayMs: 2000,
    });
    mount.onState((state, detail) => {
      if (this.#closed || mount !== this.#mount) return;
      if (state === "connected") {
        this.#host.audit(`gpu bridge ${target} connected`);
        this.#host.setDegraded(undefined);
        void this.#reconcile();
      } else {
        this.#host.audit(`gpu bridge ${target} down: ${detail}`);
        this.#host.setDegraded(GPU_BRIDGE_DOWN);
      }
    });
    return mount;
  }

  #ctx(signal: AbortSignal): RequestContext {
    return { caller: ROOT_TASK, signal };
  }

  async #open(gpuId: string, file: string, flags: { read: boolean; write: boolean }, ctx: RequestContext): Promise<OpenFile> {
    const dir = await this.#mount.walk(gpuId, ctx);
    const node = await dir.walk(file, ctx);
    return node.open({ ...flags, truncate: false }, ctx);
  }

  /** One command to `/<gpu>/ctl` and its reply line. */
  async #ctl(gpuId: string, line: string): Promise<string> {
    const ctx = this.#ctx(AbortSignal.timeout(CALL_TIMEOUT_MS));
    const f = await this.#open(gpuId, "ctl", { read: true, write: true }, ctx);
    try {
      await f.write(0, Buffer.from(line), ctx);
      return Buffer.from(await f.read(0, 64 * 1024, ctx)).toString("utf8").trim();
    } finally {
      f.close?.();
    }
  }

  /** After every (re)connection: make sure each running worker's lease is there. */
  async #reconcile(): Promise<void> {
    for (const w of this.#host.running()) {
      if (!w.lease || !this.#mount.connected) continue;
      this.#follow(w.lease.gpu_id);
      const left = Math.ceil((w.spawnedMs + w.lease.ttl_s * 1000 - Date.now()) / 1000);
      if (left <= 0) {
        await this.#host.revoke(w.id, "lease ttl expired");
        continue;
      }
      try {
        await this.lease(w.id, w.lease, left);
        this.#host.audit(`gpu lease of ${w.id} on ${w.lease.gpu_id} granted again (${left} s left): the bridge had forgotten it`);
      } catch (err) {
        const e = err instanceof NineError ? err : new NineError("io", String(err));
        if (e.errorClass === "busy" && /already holds a lease/.test(e.detail)) continue;
        if (!this.#mount.connected) return; // away again: the next connection retries
        await this.#host.revoke(w.id, `lease lost: ${e.message}`);
      }
    }
  }

  /** Starts following `gpuId`'s lease file, once. */
  #follow(gpuId: string): void {
    if (this.#closed || this.#followers.has(gpuId)) return;
    const stop = new AbortController();
    this.#followers.set(gpuId, stop);
    void this.#followLoop(gpuId, stop.signal);
  }

  /**
   * Reads the lease file from the start on every connection. After each
   * read, a worker whose latest record in it is RELEASED, and who still
   * runs with a lease on this GPU, is revoked with the record's reason.
   */
  async #followLoop(gpuId: string, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (!this.#mount.connected) {
        await sleep(200, undefined, { signal }).catch(() => {});
        continue;
      }
      let f: OpenFile | undefined;
      const ctx = this.#ctx(signal);
      try {
        f = await this.#open(gpuId, "lease", { read: true, write: false }, ctx);
        let offset = 0;
        let partial = "";
        const latest = new Map<string, BridgeLeaseRecord>();
        for (;;) {
          const data = await f.read(offset, 64 * 1024, ctx);
          if (data.length === 0) {
            await sleep(200, undefined, { signal });
            continue;
          }
          offset += data.length;
          const lines = (partial + Buffer.from(data).toString("utf8")).split("\n");
          partial = lines.pop() ?? "";
          const touched = new Set<string>();
          for (const line of lines) {
            if (!line.trim()) continue;
            try {
              const r = JSON.parse(line) as BridgeLeaseRecord;
              latest.set(r.worker, r);
              touched.add(r.worker);
            } catch {
              // a line cut by the file's retention
            }
          }
          for (const id of touched) {
            const r = latest.get(id)!;
            const w = this.#host.worker(id);
            if (r.state !== "RELEASED" || !w || w.status !== "running" || w.lease?.gpu_id !== gpuId) continue;
            void this.#host.revoke(id, `lease ${r.reason ?? "released"}`);
          }
        }
      } catch {
        if (signal.aborted) return;
        await sleep(300, undefined, { signal }).catch(() => {});
      } finally {
        f?.close?.();
      }
    }
  }
}
