/**
 * The fleet link in the root task (docs/fleet.md, "Wiring"): a
 * {@link FleetAgent} attached to the appliance's own NineDoor over an
 * in-memory connection with a `fleet` ticket minted by the boot key, so the
 * namespace is its only way into the appliance's state. Its outbox is
 * `<state>/fleet-outbox`, held by one writer (`fleet.lock`, like the commit
 * log's lock). It adds `/proc/fleet` (link state, counters, limits) and a
 * `fleet=` line to `/proc/boot`.
 *
 * Bad configuration (a CA file that cannot be read, an outbox held by
 * another link, an unreachable broker, a certificate that does not verify,
 * a refused login) is one line in `/proc/boot` (`fleet_problem=`) and the
 * log; the appliance keeps serving 9P and, once the outbox is open, keeps
 * storing records for later.
 * @module
 */
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { GeneratedFile, InvalidError, NineClient, memoryPair, toNineError, type Directory } from "../nine-door/index.ts";
import { FleetAgent, Outbox } from "../fleet/index.ts";
import type { Appliance } from "./appliance.ts";
import { acquireLogLock, type LogLock } from "./commit-log-lock.ts";
import { FLEET_ROLE } from "./control.ts";
import { mintTicket } from "./ticket.ts";

/** The `fleet` block of cohesix.config.json, or `--fleet URL` / `--fleet-id ID`. */
export interface FleetSettings {
  /** `mqtt://host:port` or `mqtts://host:port`. */
  readonly url: string;
  /** Appliance id; default `cx-<boot key id>`. */
  readonly id?: string;
  /** Topic prefix (default `cohesix`). */
  readonly prefix?: string;
  readonly username?: string;
  readonly password?: string;
  /** A file holding the password (a guest's baked `/etc/cohesix/fleet/password`); read when the link starts. */
  readonly passwordFile?: string;
  /** PEM file of the CA to pin for `mqtts://`. */
  readonly ca?: string;
  /** PEM files of a client certificate and its key. */
  readonly cert?: string;
  readonly key?: string;
  /** Forward `/log/queen.log` (default true). */
  readonly audit?: boolean;
  /** Bound on the outbox (default 64 MiB). */
  readonly maxBytes?: number;
  /** Cap on one command message (default 16 KiB). */
  readonly maxCommandBytes?: number;
  /** Commands per second (default 5), burst (default 20), waiting at once (default 16). */
  readonly commandRate?: number;
  readonly commandBurst?: number;
  readonly commandQueue?: number;
  /** Records in flight (default 32). */
  readonly window?: number;
  /** Cap on one record the link stores and sends (default 65536, 1024 to 65536). */
  readonly maxRecordBytes?: number;
  /** Delay before a new acked watermark is written to the outbox (default 50 ms, 0 to 10000). */
  readonly ackDelayMs?: number;
}

/** The running link, as the root task holds it. */
export interface RunningFleet {
  readonly agent: FleetAgent | undefined;
  /** The one line saying why the link does not work, or undefined. */
  problem(): string | undefined;
  close(): Promise<void>;
}

/** Subject of the fleet link's ticket (audit lines say `ctl from fleet-link …`). */
export const FLEET_SUBJECT = "fleet-link";

/**
 * Starts the fleet link of `app` (after `app.start`). Never throws for bad
 * configuration: the problem is in `/proc/boot`, `/proc/fleet` and the log.
 *
 * @example
 * ```ts
 * const fleet = await startFleet(app, { url: "mqtt://127.0.0.1:1883", id: "app-1" });
 * await fleet.close();
 * ```
 */
export async function startFleet(app: Appliance, settings: FleetSettings): Promise<RunningFleet> {
  const id = settings.id ?? app.fleetId;
  const dir = join(app.options.stateDir, "fleet-outbox");
  let problem: string | undefined;
  let agent: FleetAgent | undefined;
  let outbox: Outbox | undefined;
  let lock: LogLock | undefined;
  let client: NineClient | undefined;
  const proc = app.root.get("proc") as Directory;
  const status = (): string | undefined => agent?.problem ?? problem;
  app.addBootLines(() => [`fleet=${settings.url} id=${id}`, ...(status() ? [`fleet_problem=${status()}`] : [])]);
  // One /proc/fleet: the first link's (a second one on the same appliance only refuses, see below).
  if (!proc.get("fleet")) proc.add(new GeneratedFile("fleet", () => procFleet({ settings, id, dir, agent, outbox, problem: status() }), { perm: 0o444 }));
  try {
    const pem = async (what: string, path: string | undefined) => {
      if (path === undefined) return undefined;
      try {
        return await readFile(path);
      } catch (err) {
        throw new InvalidError(`fleet: cannot read the ${what} file ${path}: ${(err as Error).message}`);
      }
    };
    const [ca, cert, key] = [await pem("CA", settings.ca), await pem("client certificate", settings.cert), await pem("client key", settings.key)];
    const filePassword = (await pem("password", settings.passwordFile))?.toString("utf8").replace(/\r?\n$/, "");
    const password = settings.password ?? filePassword;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    lock = await acquireLogLock(dir, { file: "fleet.lock", what: "fleet outbox", onAudit: (l) => app.audit(l) });
    outbox = await Outbox.open(dir, {
      ...(settings.maxBytes !== undefined ? { maxBytes: settings.maxBytes } : {}),
      ...(settings.ackDelayMs !== undefined ? { ackDelayMs: settings.ackDelayMs } : {}),
      onAudit: (l) => app.audit(l),
    });
    const [near, far] = memoryPair();
    app.server.accept(far, "fleet!link");
    // 9P2000: a refusal comes back as its text (class: detail), which the reply carries.
    client = await NineClient.connect(near, { dialect: "9P2000" });
    const root = await client.attach({ uname: FLEET_ROLE, aname: mintTicket({ role: FLEET_ROLE, sub: FLEET_SUBJECT }, app.bootKey, { ttlS: 366 * 24 * 3600 }) });
    agent = new FleetAgent({
      root,
      outbox,
      link: {
        url: settings.url,
        id,
        ...(settings.prefix !== undefined ? { prefix: settings.prefix } : {}),
        ...(settings.username !== undefined ? { username: settings.username } : {}),
        ...(password !== undefined ? { password } : {}),
        ...(ca ? { ca } : {}),
        ...(cert ? { cert } : {}),
        ...(key ? { key } : {}),
        ...(settings.window !== undefined ? { window: settings.window } : {}),
        ...(settings.maxRecordBytes !== undefined ? { maxRecordBytes: settings.maxRecordBytes } : {}),
      },
      ...(settings.audit !== undefined ? { audit: settings.audit } : {}),
      ...(settings.maxCommandBytes !== undefined ? { maxCommandBytes: settings.maxCommandBytes } : {}),
      commands: {
        ...(settings.commandRate !== undefined ? { rate: settings.commandRate } : {}),
        ...(settings.commandBurst !== undefined ? { burst: settings.commandBurst } : {}),
        ...(settings.commandQueue !== undefined ? { queue: settings.commandQueue } : {}),
      },
      onAudit: (l) => app.audit(l),
    });
    await agent.start();
    app.audit(`fleet link to ${settings.url} as ${id}, outbox ${dir}`);
  } catch (err) {
    problem = toNineError(err).message;
    app.audit(`fleet: ${problem}`);
    agent = undefined;
    client?.close();
    await outbox?.close().catch(() => undefined);
    await lock?.release().catch(() => undefined);
    outbox = undefined;
    lock = undefined;
  }
  return {
    get agent() {
      return agent;
    },
    problem: status,
    async close() {
      await agent?.close();
      client?.close();
      await outbox?.close().catch(() => undefined);
      await lock?.release().catch(() => undefined);
    },
  };
}

function procFleet(s: { settings: FleetSettings; id: string; dir: string; agent: FleetAgent | undefined; outbox: Outbox | undefined; problem: string | undefined }): string {
  const link = s.agent?.link;
  const st = s.agent?.linkState;
  const box = s.outbox;
  const obs = box?.stats;
  const cmd = s.agent?.commandStats;
  const lim = s.agent?.commandLimits;
  return [
    `state=${st?.state ?? "off"} since=${st ? new Date(st.since).toISOString() : "-"} url=${s.settings.url} id=${s.id} prefix=${link?.prefix ?? s.settings.prefix ?? "cohesix"}`,
    `problem=${s.problem ?? "none"}`,
    `outbox dir=${s.dir} state=${box?.state ?? "closed"} bytes=${obs?.bytes ?? 0} segments=${obs?.segments ?? 0} last_seq=${box?.lastSeq ?? 0} acked=${box?.acked ?? 0} pending=${box?.pending ?? 0} dropped=${obs?.dropped ?? 0}`,
    `link connects=${link?.stats.connects ?? 0} published=${link?.stats.published ?? 0} acked=${link?.stats.acked ?? 0} inflight=${link?.stats.inflight ?? 0}`,
    `commands accepted=${cmd?.accepted ?? 0} refused=${cmd?.refused ?? 0} busy=${cmd?.busy ?? 0}`,
    `limits outbox_max_bytes=${s.settings.maxBytes ?? 64 << 20} ack_delay_ms=${s.settings.ackDelayMs ?? 50} max_record_bytes=${s.settings.maxRecordBytes ?? 65536} window=${s.settings.window ?? 32} max_command_bytes=${lim?.maxBytes ?? 16384} command_rate=${lim?.rate ?? 5} command_burst=${lim?.burst ?? 20} command_queue=${lim?.queue ?? 16}`,
    "",
  ].join("\n");
}
