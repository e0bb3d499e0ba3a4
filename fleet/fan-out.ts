/**
 * Fan-out of one signed command to many appliances over the broker
 * (docs/fleet.md, "Commands" and "Host commands"): each appliance gets its
 * own envelope (its id in `to`, its counter, a reply name), published at
 * most `ratePerS` a second; each answer is matched by topic, id and reply
 * name, and an appliance with no answer by the deadline is `timed out`.
 * A refusal for a replayed counter is tried once more with the counter the
 * reply names (`last_ctr + 1`), as the protocol says.
 *
 * The host connection and the signer are given, so this file knows
 * nothing about keys, sockets or the CLI.
 *
 * @example
 * ```ts
 * const results = await fanOut(host, [{ id: "app-1", ctr: 41 }], {
 *   prefix: "cohesix",
 *   command: '{"spawn":"heartbeat"}',
 *   sign: (command, address) => signFleetCommand(command, queenKey, address),
 * });
 * results[0]; // { id: "app-1", status: "ok", ctr: 42, result: { ok: true, worker: "worker-3" }, ms: 12 }
 * ```
 * @module
 */
import { randomBytes } from "node:crypto";
import { InvalidError } from "../nine-door/index.ts";
import { decodeReply } from "./commands.ts";
import type { FleetHost } from "./host.ts";
import { channelTopic, checkName, checkPrefix, parseTopic } from "./records.ts";

/** What fan-out needs of a broker connection. */
export type FanOutHost = Pick<FleetHost, "subscribe" | "publish" | "onMessage">;

/** One appliance to command, with the last accepted counter its birth says (if it says one). */
export interface FanOutTarget {
  readonly id: string;
  readonly ctr?: number | undefined;
}

/** How one appliance's command ended. */
export type FanOutStatus = "ok" | "refused" | "timed out";

/** One appliance's outcome. */
export interface FanOutResult {
  readonly id: string;
  readonly status: FanOutStatus;
  /** The counter of the last envelope sent to it. */
  readonly ctr: number;
  /** ms from the start of the fan-out to its answer (or to the deadline). */
  readonly ms: number;
  /** The `/queen/ctl` reply, when ok. */
  readonly result?: Readonly<Record<string, unknown>>;
  /** The refusal (`class: detail`), or why it timed out. */
  readonly error?: string;
}

/** Default most envelopes published per second. */
export const DEFAULT_FAN_OUT_RATE = 1000;
/** Default time for every appliance to answer. */
export const DEFAULT_FAN_OUT_DEADLINE_MS = 10_000;
/** Most appliances one fan-out addresses. */
export const MAX_FAN_OUT_TARGETS = 100_000;

/** Options of {@link fanOut}. */
export interface FanOutOptions {
  prefix: string;
  /** The command, JSON text (`{"spawn":"heartbeat"}`). */
  command: string;
  /** Makes the envelope for one appliance (signFleetCommand with the queen key). */
  sign: (command: string, address: { ctr: number; to: string; reply: string }) => string;
  /** Most envelopes published per second (default {@link DEFAULT_FAN_OUT_RATE}). */
  ratePerS?: number;
  /** Every appliance must answer within this (default {@link DEFAULT_FAN_OUT_DEADLINE_MS}). */
  deadlineMs?: number;
  /** Called with each outcome as it is known. */
  onResult?: (result: FanOutResult) => void;
}

interface Pending {
  readonly target: FanOutTarget;
  ctr: number;
  attempt: 1 | 2;
  done: boolean;
}

/**
 * Sends the command to every target and resolves with one result per
 * target, in the targets' order, once all answered or the deadline passed.
 *
 * @example
 * ```ts
 * const results = await fanOut(host, targets, { prefix, command, sign, ratePerS: 50, deadlineMs: 5000 });
 * const failed = results.filter((r) => r.status !== "ok").length;
 * ```
 */
export async function fanOut(host: FanOutHost, targets: readonly FanOutTarget[], options: FanOutOptions): Promise<FanOutResult[]> {
  const prefix = checkPrefix(options.prefix);
  const rate = options.ratePerS ?? DEFAULT_FAN_OUT_RATE;
  const deadlineMs = options.deadlineMs ?? DEFAULT_FAN_OUT_DEADLINE_MS;
  if (!(rate > 0 && Number.isFinite(rate))) throw new InvalidError(`fleet: rate must be a number of commands per second above 0, got ${rate}`);
  if (!(deadlineMs > 0 && Number.isFinite(deadlineMs))) throw new InvalidError(`fleet: deadline must be above 0 s, got ${deadlineMs / 1000}`);
  if (targets.length > MAX_FAN_OUT_TARGETS) throw new InvalidError(`fleet: ${targets.length} appliances exceed the ${MAX_FAN_OUT_TARGETS} one fan-out addresses`);
  const pending = new Map<string, Pending>();
  for (const t of targets) {
    checkName(t.id, "appliance id");
    if (pending.has(t.id)) throw new InvalidError(`fleet: appliance ${t.id} named twice`);
    pending.set(t.id, { target: t, ctr: (t.ctr ?? 0) + 1, attempt: 1, done: false });
  }
  const base = `h-${Date.now()}-${randomBytes(4).toString("hex")}`;
  const names = { 1: base, 2: `${base}-r` } as const;
  const started = performance.now();
  const results = new Map<string, FanOutResult>();
  let left = pending.size;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  if (left === 0) finish();

  const settle = (p: Pending, result: Omit<FanOutResult, "id" | "ctr" | "ms">): void => {
    if (p.done) return;
    p.done = true;
    const r: FanOutResult = { id: p.target.id, ctr: p.ctr, ms: Math.round(performance.now() - started), ...result };
    results.set(r.id, r);
    options.onResult?.(r);
    if (--left === 0) finish();
  };

  const send = (p: Pending): void => {
    const reply = names[p.attempt];
    let payload: string;
    try {
      payload = options.sign(options.command, { ctr: p.ctr, to: p.target.id, reply });
    } catch (err) {
      settle(p, { status: "refused", error: message(err) });
      return;
    }
    host.publish(channelTopic(prefix, p.target.id, { channel: "cmd" }), Buffer.from(payload)).catch((err: unknown) => settle(p, { status: "refused", error: message(err) }));
  };

  const off = host.onMessage((topic, payload) => {
    const where = parseTopic(prefix, topic);
    if (!where || where.channel !== "reply") return;
    const p = pending.get(where.id);
    if (!p || p.done || where.name !== names[p.attempt]) return;
    let reply;
    try {
      reply = decodeReply(payload);
    } catch {
      return; // not an answer: keep waiting for one
    }
    if (reply.id !== where.id || reply.name !== where.name) return;
    if (reply.ok) return settle(p, { status: "ok", result: reply.result ?? {} });
    const error = reply.error ?? "refused";
    if (p.attempt === 1 && /^permission: replay\b/.test(error) && reply.last_ctr + 1 > p.ctr) {
      p.attempt = 2;
      p.ctr = reply.last_ctr + 1;
      send(p);
      return;
    }
    settle(p, { status: "refused", error });
  });

  const timer = setTimeout(() => {
    for (const p of pending.values()) settle(p, { status: "timed out", error: `no reply within ${deadlineMs / 1000} s` });
  }, deadlineMs);
  try {
    if (left > 0) await host.subscribe([`${prefix}/+/reply/${names[1]}`, `${prefix}/+/reply/${names[2]}`]);
    let i = 0;
    for (const p of pending.values()) {
      if (left === 0) break;
      const due = (i++ * 1000) / rate - (performance.now() - started);
      if (due > 1) await new Promise((r) => setTimeout(r, due));
      if (!p.done) send(p);
    }
    await finished;
  } finally {
    clearTimeout(timer);
    off();
  }
  return targets.map((t) => results.get(t.id)!);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
