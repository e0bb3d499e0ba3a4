// A real mosquitto for the fleet link's tests: started on an ephemeral
// 127.0.0.1 port with a config file, stopped by its PID (SIGTERM, so it
// saves its persistence file; SIGKILL after 5 s). Restartable on the same
// port and persistence directory, so a subscriber's session survives.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
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

/** A TLS listener and password login (files made by {@link makeTls} and {@link makePasswords}). */
export interface BrokerOptions {
  readonly tls?: { readonly cert: string; readonly key: string };
  /** A mosquitto_passwd file: anonymous clients are refused. */
  readonly passwordFile?: string;
  /** More lines for mosquitto.conf (a bridge). */
  readonly extra?: readonly string[];
}

export class Broker {
  readonly port: number;
  readonly #dir: string;
  readonly #options: BrokerOptions;
  #proc: ChildProcess | undefined;
  #log = "";

  private constructor(dir: string, port: number, options: BrokerOptions) {
    this.#dir = dir;
    this.port = port;
    this.#options = options;
  }

  /** Starts mosquitto with its files in `dir` and waits until it accepts connections. */
  static async start(dir: string, options: BrokerOptions = {}): Promise<Broker> {
    const broker = new Broker(dir, await freePort(), options);
    await broker.restart();
    return broker;
  }

  get url(): string {
    return `${this.#options.tls ? "mqtts" : "mqtt"}://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.#proc?.pid;
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
        ...(this.#options.tls ? [`certfile ${this.#options.tls.cert}`, `keyfile ${this.#options.tls.key}`] : []),
        ...(this.#options.passwordFile ? ["allow_anonymous false", `password_file ${this.#options.passwordFile}`] : ["allow_anonymous true"]),
        "user root",
        "persistence true",
        `persistence_location ${this.#dir}/`,
        "max_queued_messages 0",
        "max_inflight_messages 0",
        "log_dest stderr",
        ...(this.#options.extra ?? []),
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

  /** Kills it -9 by PID (nothing saved) and waits for the exit. */
  async kill(): Promise<void> {
    const proc = this.#proc;
    if (!proc) return;
    this.#proc = undefined;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    process.kill(proc.pid!, "SIGKILL");
    await exited;
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

/** A CA and a server certificate for 127.0.0.1 signed by it (openssl), in `dir`. */
export interface TlsFiles {
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** The CA's PEM. */
  readonly ca: Buffer;
}

function openssl(args: string[]): void {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

/** Makes a CA (`name`-ca.pem) and a server certificate for IP 127.0.0.1 (and `ips`, e.g. a guest's 10.0.2.2) signed by it. */
export async function makeTls(dir: string, name = "test", options: { readonly ips?: readonly string[] } = {}): Promise<TlsFiles> {
  const f = (x: string) => join(dir, `${name}-${x}`);
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", `/CN=${name} test CA`]);
  openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=127.0.0.1"]);
  await writeFile(f("ext.cnf"), `subjectAltName=${["127.0.0.1", ...(options.ips ?? [])].map((ip) => `IP:${ip}`).join(",")},DNS:localhost\n`);
  openssl(["x509", "-req", "-in", f("server.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("server.pem"), "-days", "2", "-extfile", f("ext.cnf")]);
  return { caCert: f("ca.pem"), serverCert: f("server.pem"), serverKey: f("server.key"), ca: await readFile(f("ca.pem")) };
}

/** A mosquitto_passwd file with these users. */
export async function makePasswords(file: string, users: Readonly<Record<string, string>>): Promise<string> {
  let first = true;
  for (const [user, password] of Object.entries(users)) {
    const r = spawnSync("mosquitto_passwd", [...(first ? ["-c"] : []), "-b", file, user, password], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`mosquitto_passwd: ${r.stderr}`);
    first = false;
  }
  return file;
}
