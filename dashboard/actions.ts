/**
 * `POST /api/ctl`: the one way a page changes anything. The body is checked
 * here (strict JSON, known fields, sizes), then the command goes through the
 * same path as the CLI's verb — `sendCtl` for spawn and kill (signed with
 * the queen key the server holds), the lifecycle ctl file for cordon, drain
 * and resume, QMP for the kill switch — and the result is audited.
 * @module
 */
import { InvalidError, NotFoundError } from "../nine-door/index.ts";
import type { ApplianceWatch, KillSwitchOp } from "./appliance.ts";
import type { CtlRequest } from "./model.ts";

/** What a checked request does. */
export type Action =
  | { readonly kind: "ctl"; readonly text: string }
  | { readonly kind: "lifecycle"; readonly word: "cordon" | "drain" | "resume" }
  | { readonly kind: "vm"; readonly op: KillSwitchOp };

const WORKER_ID = /^worker-[1-9][0-9]{0,8}$/;
const SNAPSHOT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function object(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new InvalidError(`${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

function onlyKeys(obj: Record<string, unknown>, allowed: readonly string[], what: string): void {
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) throw new InvalidError(`${what}: unknown field ${JSON.stringify(k)} (expected ${allowed.join(", ")})`);
}

function positive(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) throw new InvalidError(`${what} must be a positive whole number, got ${JSON.stringify(value)}`);
  return value;
}

/**
 * The request in a body: `{"appliance": ID, "command": {…}}`.
 *
 * @throws {InvalidError} a body that is not that, with what is wrong.
 *
 * @example
 * ```ts
 * parseCtlRequest('{"appliance":"tcp!127.0.0.1!5640","command":{"kill":"worker-3"}}').command; // { kill: "worker-3" }
 * ```
 */
export function parseCtlRequest(body: string): CtlRequest {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (err) {
    throw new InvalidError(`the request is not JSON: ${(err as Error).message}`);
  }
  const obj = object(value, "the request");
  onlyKeys(obj, ["appliance", "command"], "the request");
  if (typeof obj.appliance !== "string" || obj.appliance === "" || obj.appliance.length > 256) throw new InvalidError("the request's appliance must be an appliance id (its dial string)");
  return { appliance: obj.appliance, command: object(obj.command, "command") };
}

/**
 * Checks a command against what the appliance has: a spawn names a program
 * it carries, a kill a worker it runs, a lifecycle word one of cordon, drain,
 * resume, a kill switch operation a VM with a valid snapshot name.
 *
 * @throws {InvalidError} a malformed command.
 * @throws {NotFoundError} an unknown program or worker.
 *
 * @example
 * ```ts
 * actionOf({ spawn: "heartbeat", ticks: 10 }, watch); // { kind: "ctl", text: '{"spawn":"heartbeat","ticks":10}' }
 * ```
 */
export function actionOf(command: Readonly<Record<string, unknown>>, watch: ApplianceWatch): Action {
  const keys = Object.keys(command);
  if ("spawn" in command) {
    onlyKeys(command, ["spawn", "ticks", "budget", "restart", "lease"], "spawn");
    const name = command.spawn;
    if (typeof name !== "string" || !/^[a-z][a-z0-9-]{0,31}$/.test(name)) throw new InvalidError(`spawn takes a program name such as heartbeat, got ${JSON.stringify(name)}`);
    const programs = watch.view.programs;
    if (programs.length > 0 && !programs.includes(name)) throw new NotFoundError(`spawn: ${watch.id} carries no program ${JSON.stringify(name)} (it carries ${programs.join(", ")})`);
    const cmd: Record<string, unknown> = { spawn: name };
    if (command.ticks !== undefined) cmd.ticks = positive(command.ticks, "spawn: ticks");
    if (command.budget !== undefined) {
      const budget = object(command.budget, "spawn: budget");
      onlyKeys(budget, ["ttl_s", "ops"], "spawn: budget");
      const b: Record<string, number> = {};
      if (budget.ttl_s !== undefined) b.ttl_s = positive(budget.ttl_s, "spawn: budget.ttl_s");
      if (budget.ops !== undefined) b.ops = positive(budget.ops, "spawn: budget.ops");
      if (Object.keys(b).length > 0) cmd.budget = b;
    }
    if (command.lease !== undefined) {
      const lease = object(command.lease, "spawn: lease");
      onlyKeys(lease, ["gpu_id", "mem_mb", "streams", "ttl_s", "priority"], "spawn: lease");
      if (typeof lease.gpu_id !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(lease.gpu_id)) throw new InvalidError(`spawn: lease.gpu_id must be a GPU id such as GPU-0, got ${JSON.stringify(lease.gpu_id)}`);
      const priority = lease.priority ?? 0;
      if (typeof priority !== "number" || !Number.isSafeInteger(priority) || priority < 0) throw new InvalidError(`spawn: lease.priority must be a whole number of at least 0, got ${JSON.stringify(priority)}`);
      cmd.lease = {
        gpu_id: lease.gpu_id,
        mem_mb: positive(lease.mem_mb, "spawn: lease.mem_mb"),
        streams: lease.streams === undefined ? 1 : positive(lease.streams, "spawn: lease.streams"),
        ttl_s: lease.ttl_s === undefined ? (cmd.budget as { ttl_s?: number } | undefined)?.ttl_s ?? 120 : positive(lease.ttl_s, "spawn: lease.ttl_s"),
        priority,
      };
    }
    if (command.restart !== undefined) {
      if (typeof command.restart !== "boolean") throw new InvalidError("spawn: restart must be true or false");
      if (command.restart) cmd.restart = true;
    }
    return { kind: "ctl", text: JSON.stringify(cmd) };
  }
  if ("kill" in command) {
    onlyKeys(command, ["kill"], "kill");
    const id = command.kill;
    if (typeof id !== "string" || !WORKER_ID.test(id)) throw new InvalidError(`kill takes a worker id such as worker-3, got ${JSON.stringify(id)}`);
    if (!watch.hasWorker(id)) throw new NotFoundError(`kill: ${watch.id} runs no worker ${id}`);
    return { kind: "ctl", text: JSON.stringify({ kill: id }) };
  }
  if ("lifecycle" in command) {
    onlyKeys(command, ["lifecycle"], "lifecycle");
    const word = command.lifecycle;
    if (word !== "cordon" && word !== "drain" && word !== "resume") throw new InvalidError(`lifecycle takes cordon, drain or resume, got ${JSON.stringify(word)}`);
    return { kind: "lifecycle", word };
  }
  if ("vm" in command) {
    onlyKeys(command, ["vm", "name"], "vm");
    const op = command.vm;
    if (op === "pause" || op === "resume") return { kind: "vm", op: { op } };
    if (op !== "snapshot" && op !== "restore") throw new InvalidError(`vm takes pause, resume, snapshot or restore, got ${JSON.stringify(op)}`);
    const name = command.name;
    if (typeof name !== "string" || !SNAPSHOT.test(name)) throw new InvalidError(`vm ${op} takes a snapshot name of letters, digits, . _ - (up to 64), got ${JSON.stringify(name)}`);
    return { kind: "vm", op: { op, name } };
  }
  throw new InvalidError(`unknown command ${keys.length > 0 ? JSON.stringify(keys[0]) : "{}"} (expected spawn, kill, lifecycle or vm)`);
}

/**
 * Runs a checked action on the appliance and resolves with its reply.
 *
 * @example
 * ```ts
 * await runAction({ kind: "lifecycle", word: "cordon" }, watch); // '{"ok":true,"state":"ONLINE","cordoned":true}'
 * ```
 */
export async function runAction(action: Action, watch: ApplianceWatch): Promise<string> {
  switch (action.kind) {
    case "ctl":
      return watch.ctl(action.text);
    case "lifecycle":
      return watch.ctl(JSON.stringify({ lifecycle: action.word }), { path: "/queen/lifecycle/ctl" });
    case "vm":
      return watch.killSwitch(action.op);
  }
}
