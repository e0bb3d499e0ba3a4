/**
 * The control pipeline: the one queue every state-changing ctl write of the
 * appliance goes through (`/queen/ctl`, `/queen/lifecycle/ctl`,
 * `/worker/<id>/ctl`). A command is parsed once, validated, and its
 * records staged (seq taken, state applied in memory) in arrival order, so
 * two queens never take the same worker id or counter; the queue then
 * moves on to the next command before the fsync, and the command's effects
 * and reply wait until its records are durable (see `control.ts`). Every
 * kind of command takes this one path: spawn, kill, budget, bind, unbind,
 * mount, the lifecycle words and a worker's kill. Every refusal is
 * audited with the caller.
 * @module
 */
import { toNineError, type Caller, type NineError } from "../nine-door/index.ts";
import { openSignedFileCommand, runLifecycleCommand, runQueenCommand, runWorkerCommand, type ControlHost } from "./control.ts";

/** What the pipeline needs besides the control host. */
export interface ControlPipelineOptions {
  /**
   * The hardware clock to follow (see `ApplianceOptions.clock`): each
   * command waits for its `sync()` so what it commits carries the right time.
   */
  readonly clock?: { sync(): Promise<unknown> };
  /** Why commands are refused right now (e.g. the commit log cannot write), or undefined. */
  readonly refusal: () => NineError | undefined;
  audit(line: string): void;
}

/**
 * One queue for the appliance's control commands, built once with the
 * host it acts on.
 *
 * @example
 * ```ts
 * const pipeline = new ControlPipeline(host, { refusal: () => undefined, audit: console.log });
 * await pipeline.queen('{"spawn":"heartbeat"}', caller); // '{"ok":true,"worker":"worker-1"}'
 * ```
 */
export class ControlPipeline {
  readonly #host: ControlHost;
  readonly #options: ControlPipelineOptions;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(host: ControlHost, options: ControlPipelineOptions) {
    this.#host = host;
    this.#options = options;
  }

  /**
   * A write to `/queen/ctl`: ordered and staged in the queue, then (after
   * the queue moved on) acted on once durable; resolves with the reply.
   *
   * @example
   * ```ts
   * await pipeline.queen('{"budget":{"ops":50}}', caller); // '{"ok":true,"defaults":{"ops":50}}'
   * ```
   */
  async queen(text: string, caller: Caller): Promise<string> {
    try {
      const finish = await this.#ordered(() => runQueenCommand(this.#host, text, caller));
      return await finish();
    } catch (err) {
      throw this.#refused(err, `ctl from ${caller.subject} refused`, `: ${text.slice(0, 200)}`);
    }
  }

  /**
   * A command of the root task itself (e.g. spawning a required worker at
   * boot): run as a queen command under the `open` policy, since no queen
   * signed it and none needs to; audited as from `root-task`.
   *
   * @example
   * ```ts
   * await pipeline.own('{"spawn":"camera"}'); // '{"ok":true,"worker":"worker-1"}'
   * ```
   */
  async own(text: string): Promise<string> {
    const host = Object.create(this.#host, { policy: { value: "open" } }) as ControlHost;
    const caller: Caller = { role: "queen", subject: "root-task" };
    try {
      const finish = await this.#ordered(() => runQueenCommand(host, text, caller));
      return await finish();
    } catch (err) {
      throw this.#refused(err, "root-task command refused", `: ${text.slice(0, 200)}`);
    }
  }

  /**
   * A write to `/queen/lifecycle/ctl` (`cordon`, `drain`, …): its records
   * staged in the queue, workers stopped once they are durable.
   *
   * @example
   * ```ts
   * await pipeline.lifecycle("cordon", caller); // '{"ok":true,"state":"ONLINE","cordoned":true}'
   * ```
   */
  async lifecycle(text: string, caller: Caller): Promise<string> {
    try {
      const finish = await this.#ordered(() => runLifecycleCommand(this.#host, text, caller));
      return await finish();
    } catch (err) {
      throw this.#refused(err, `lifecycle from ${caller.subject} refused`);
    }
  }

  /**
   * A write to `/worker/<id>/ctl` (`kill`): the exit record staged in the
   * queue, the process stopped once it is durable.
   *
   * @example
   * ```ts
   * await pipeline.worker("worker-2", "kill", caller); // '{"ok":true,"worker":"worker-2","status":"killed"}'
   * ```
   */
  async worker(id: string, text: string, caller: Caller): Promise<string> {
    try {
      const finish = await this.#ordered(() => runWorkerCommand(this.#host, id, text, caller));
      return await finish();
    } catch (err) {
      throw this.#refused(err, `${id} ctl from ${caller.subject} refused`);
    }
  }

  /**
   * A write to a ctl file whose command runs outside this queue
   * (`/update/ctl`: a commit writes a whole slot and must not hold up
   * `/queen/ctl`). Only the envelope is handled here, in order: checked
   * and, under `signed-ctl`, its counter committed before `run` starts;
   * under `open` an envelope's counter is committed after `run` succeeds.
   *
   * @example
   * ```ts
   * await pipeline.outside(text, caller, "update ctl", (command) => updates.command(command, caller)); // "ok offset=0"
   * ```
   */
  async outside(text: string, caller: Caller, what: string, run: (command: string) => Promise<string>): Promise<string> {
    let opened;
    try {
      opened = await this.#ordered(() => openSignedFileCommand(this.#host, text));
    } catch (err) {
      throw this.#refused(err, `${what} from ${caller.subject} refused`);
    }
    const reply = await run(opened.command);
    await this.#ordered(() => opened.accepted());
    return reply;
  }

  /** Runs `fn` after every command before it has been ordered; a refusal answers at once. */
  #ordered<T>(fn: () => Promise<T>): Promise<T> {
    const clock = this.#options.clock;
    const step = async (): Promise<T> => {
      const refusal = this.#options.refusal();
      if (refusal) throw refusal;
      if (clock) await clock.sync();
      return fn();
    };
    const run = this.#queue.then(step, step);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #refused(err: unknown, what: string, tail = ""): NineError {
    const e = toNineError(err);
    this.#options.audit(`${what}: ${e.message}${tail}`);
    return e;
  }
}
