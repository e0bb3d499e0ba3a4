// Simulated appliances for the fleet verbs' tests and benchmark: each one a
// real FleetLink with its own id, state directory and outbox, publishing
// telemetry at a rate; and the documented command protocol (docs/fleet.md,
// "Commands"): one shared MQTT client subscribed to <prefix>/+/cmd checks
// each message with the appliance's checks (checkCommand) and the root
// task's signed-ctl verification (openEnvelope with the appliance's
// id and last counter), and replies on the named reply topic.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import mqtt from "mqtt";
import { FleetLink, Outbox, channelTopic, checkCommand, encodeReply, parseTopic } from "../../fleet/index.ts";
import { openEnvelope } from "../../root-task/index.ts";

export interface SimFleetOptions {
  readonly url: string;
  /** Each appliance's state directory is DIR/ID. */
  readonly dir: string;
  readonly ids: readonly string[];
  readonly queenPub: Uint8Array;
  readonly prefix?: string;
  /** Appliances that never answer a command. */
  readonly silent?: ReadonlySet<string>;
  /** Last accepted counters to start from (default 0). */
  readonly lastCtr?: Readonly<Record<string, number>>;
  /** Telemetry records per second per appliance (0: none). */
  readonly hz?: number;
  readonly ca?: Buffer;
  readonly username?: string;
  readonly password?: string;
  readonly boot?: (id: string) => Record<string, string>;
}

export interface SimAppliance {
  readonly id: string;
  readonly link: FleetLink;
  readonly outbox: Outbox;
  lastCtr: number;
  /** Seqs whose append resolved, in order. */
  readonly made: number[];
  /** Commands that ran. */
  readonly ran: object[];
}

export class SimFleet {
  readonly appliances = new Map<string, SimAppliance>();
  readonly #o: SimFleetOptions;
  readonly #prefix: string;
  #cmd: mqtt.MqttClient | undefined;
  #timer: NodeJS.Timeout | undefined;
  #tick = 0;
  #stopped = false;

  private constructor(options: SimFleetOptions) {
    this.#o = options;
    this.#prefix = options.prefix ?? "cohesix";
  }

  static async start(options: SimFleetOptions): Promise<SimFleet> {
    const sim = new SimFleet(options);
    await sim.#start();
    return sim;
  }

  async #start(): Promise<void> {
    const o = this.#o;
    const login = { ...(o.ca ? { ca: o.ca } : {}), ...(o.username ? { username: o.username } : {}), ...(o.password ? { password: o.password } : {}) };
    for (const id of o.ids) {
      const dir = join(o.dir, id);
      await mkdir(dir, { recursive: true });
      const outbox = await Outbox.open(join(dir, "fleet-outbox"), { ackDelayMs: 20 });
      const link = new FleetLink({
        url: o.url,
        id,
        outbox,
        prefix: this.#prefix,
        birth: () => ({ version: "0.1.0", boot: o.boot?.(id) ?? { board: "sim" }, lifecycle: "ONLINE" }),
        minBackoffMs: 200,
        maxBackoffMs: 1000,
        ...login,
      });
      this.appliances.set(id, { id, link, outbox, lastCtr: o.lastCtr?.[id] ?? 0, made: [], ran: [] });
    }
    const cmd = mqtt.connect(o.url, { clientId: `sim-cmd-${process.pid}-${Date.now()}`, protocolVersion: 4, clean: false, reconnectPeriod: 200, ...login });
    cmd.on("error", () => {});
    cmd.on("message", (topic, payload) => this.#command(topic, payload));
    await new Promise<void>((ok, fail) => cmd.once("connect", () => cmd.subscribe(`${this.#prefix}/+/cmd`, { qos: 1 }, (err) => (err ? fail(err) : ok()))));
    this.#cmd = cmd;
    for (const a of this.appliances.values()) a.link.start();
    if ((o.hz ?? 0) > 0) this.#timer = setInterval(() => this.#telemetry(), 1000 / o.hz!);
  }

  #telemetry(): void {
    const tick = this.#tick++;
    for (const a of this.appliances.values()) {
      void a.link.publish({ kind: "telemetry", worker: "worker-1", data: { tick } }).then(
        (seq) => a.made.push(seq),
        () => {},
      );
    }
  }

  #command(topic: string, payload: Buffer): void {
    const where = parseTopic(this.#prefix, topic);
    if (!where || where.channel !== "cmd") return;
    const a = this.appliances.get(where.id);
    if (!a || this.#o.silent?.has(a.id)) return;
    let reply: string;
    let ctr = 0;
    let answer: { ok: true; result: Record<string, unknown> } | { ok: false; error: string };
    try {
      const command = checkCommand(payload, { id: a.id });
      reply = command.reply;
      ctr = command.ctr;
      const opened = openEnvelope(command.text, this.#o.queenPub, { lastCtr: a.lastCtr, applianceId: a.id });
      a.lastCtr = opened.ctr;
      a.ran.push(JSON.parse(opened.command) as object);
      answer = { ok: true, result: { ok: true, ran: JSON.parse(opened.command) as object } };
    } catch (err) {
      const name = (() => {
        try {
          return (JSON.parse(payload.toString("utf8")) as { reply?: string }).reply;
        } catch {
          return undefined;
        }
      })();
      if (typeof name !== "string") return;
      reply = name;
      answer = { ok: false, error: (err as Error).message };
    }
    const body = encodeReply({ v: 1, kind: "reply", id: a.id, name: reply, ts_ms: Date.now(), ctr, last_ctr: a.lastCtr, ...answer });
    this.#cmd?.publish(channelTopic(this.#prefix, a.id, { channel: "reply", name: reply }), Buffer.from(body), { qos: 1 });
  }

  /** Every appliance publishes `n` telemetry records as fast as its outbox takes them; resolves once all are durable. */
  async burst(n: number): Promise<void> {
    await Promise.all(
      [...this.appliances.values()].map(async (a) => {
        for (let i = 0; i < n; i += 16) {
          const seqs = await Promise.all(Array.from({ length: Math.min(16, n - i) }, (_, k) => a.link.publish({ kind: "telemetry", worker: "worker-1", data: { burst: i + k } })));
          a.made.push(...seqs);
        }
      }),
    );
  }

  /** Appliances whose link is online. */
  get online(): number {
    let n = 0;
    for (const a of this.appliances.values()) if (a.link.state === "online") n += 1;
    return n;
  }

  /** Stops making telemetry and waits until every outbox delivered everything (or `timeoutMs`). */
  async drain(timeoutMs = 60_000): Promise<boolean> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if ([...this.appliances.values()].every((a) => a.outbox.pending === 0)) return true;
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    await Promise.all([...this.appliances.values()].map((a) => a.link.close()));
    for (const a of this.appliances.values()) await a.outbox.close();
    const cmd = this.#cmd;
    if (cmd) await new Promise<void>((r) => cmd.end(true, {}, () => r()));
  }
}
