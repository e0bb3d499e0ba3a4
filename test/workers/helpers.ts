/**
 * A real appliance for worker tests: booted in a temporary state folder,
 * listening on a Unix socket, with `/worker/<id>/{telemetry,ctl}` added
 * and worker tickets minted with its boot key.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AppendLog,
  CtlFile,
  Directory,
  InvalidError,
  listen,
  validateJsonLines,
  type Listener,
} from "../../nine-door/index.ts";
import { Appliance, generateKeyPair, mintTicket } from "../../root-task/index.ts";

export interface WorkerSlot {
  readonly telemetry: AppendLog;
  readonly ctl: CtlFile;
  /** Commands the ctl file received. */
  readonly commands: string[];
}

export interface TestAppliance {
  readonly app: Appliance;
  readonly listener: Listener;
  /** `unix!/…/nd.sock` */
  readonly addr: string;
  readonly tmp: string;
  /** Adds `/worker/<id>/{telemetry,ctl}`. */
  addWorker(id: string): WorkerSlot;
  /** A worker ticket minted with the boot key. */
  ticket(sub: string, role?: string): string;
  close(): Promise<void>;
}

export async function bootTestAppliance(): Promise<TestAppliance> {
  const tmp = await mkdtemp(join(tmpdir(), "cohesix-workers-"));
  const queen = await generateKeyPair();
  const app = await Appliance.boot({ board: "host", stateDir: join(tmp, "state"), queenPublicKey: queen.publicKey });
  const listener = await listen(`unix!${join(tmp, "nd.sock")}`, (conn, peer) => app.server.accept(conn, peer.remote));
  return {
    app,
    listener,
    addr: listener.dialString,
    tmp,
    addWorker(id) {
      const commands: string[] = [];
      const telemetry = new AppendLog("telemetry", { writable: true, validate: validateJsonLines });
      const ctl = new CtlFile("ctl", (command) => {
        if (command !== "kill") throw new InvalidError(`unknown worker command ${JSON.stringify(command)}`);
        commands.push(command);
        return "ok";
      });
      app.workers.add(new Directory(id, { children: [telemetry, ctl] }));
      return { telemetry, ctl, commands };
    },
    ticket(sub, role = "worker-heartbeat") {
      return mintTicket({ role, sub }, app.bootKey);
    },
    async close() {
      await listener.close();
      app.shutdown("test done");
      await rm(tmp, { recursive: true, force: true });
    },
  };
}

/** Resolves when `check()` is true; rejects after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
