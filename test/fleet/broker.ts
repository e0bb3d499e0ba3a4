// A real mosquitto for the fleet link's tests: started on an ephemeral
// 127.0.0.1 port with a config file, stopped by its PID (SIGTERM, so it
// saves its persistence file; SIGKILL after 5 s). Restartable on the same
// port and persistence directory, so a subscriber's session survives.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { join } from "node:path";

export const haveMosquitto = spawnSync("sh", ["-c", "command -v mosquitto"]).status === 0;

/** A port the kernel just handed out on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

export class Broker {
  readonly port: number;
  readonly #dir: string;
  #proc: ChildProcess | undefined;
  #log = "";

  private constructor(dir: string, port: number) {
    this.#dir = dir;
    this.port = port;
  }

  /** Starts mosquitto with its files in `dir` and waits until it accepts connections. */
  static async start(dir: string): Promise<Broker> {
    const broker = new Broker(dir, await freePort());
    await broker.restart();
    return broker;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  get log(): string {
    return this.#log;
  }

  async restart(): Promise<void> {
    if (this.#proc) throw new Error("broker already running");
    const conf = join(this.#dir, "mosquitto.conf");
    await writeFile(
      conf,
      [
        `listener ${this.port} 127.0.0.1`,
        "allow_anonymous true",
        "user root",
        "persistence true",
        `persistence_location ${this.#dir}/`,
        "max_queued_messages 0",
        "max_inflight_messages 0",
        "log_dest stderr",
        "",
      ].join("\n"),
    );
    const proc = spawn("mosquitto", ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
    proc.stdout!.on("data", (d: Buffer) => (this.#log += d.toString()));
    proc.stderr!.on("data", (d: Buffer) => (this.#log += d.toString()));
    this.#proc = proc;
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`mosquitto exited ${proc.exitCode}: ${this.#log}`);
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect(this.port, "127.0.0.1", () => {
          s.destroy();
          resolve(true);
        });
        s.on("error", () => resolve(false));
      });
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${this.port}: ${this.#log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops it by PID and waits for the exit. */
  async stop(): Promise<void> {
    const proc = this.#proc;
    if (!proc) return;
    this.#proc = undefined;
    if (proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    process.kill(proc.pid!, "SIGTERM");
    const timer = setTimeout(() => proc.exitCode === null && process.kill(proc.pid!, "SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}
