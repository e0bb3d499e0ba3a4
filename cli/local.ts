/**
 * The commands that work on this machine: keygen, ticket, serve.
 * @module
 */
import { once } from "node:events";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseDialString, parseLimits, parseListenAddress } from "../nine-door/index.ts";
import { bundleForHost, placeForHost } from "../project/index.ts";
import { BUILTIN_WORKERS, parseAuditLimits, serveAppliance, mintTicket, readPrivateKey, writeKeyPair, type FleetSettings } from "../root-task/index.ts";
import { required, str, UsageError, type Parsed } from "./args.ts";
import { inUse, readQueenKey } from "./hints.ts";
import { configDir, defaultQueenKey, defaultQueenPub } from "./paths.ts";
import { projectOf } from "./project.ts";
import { parseUpdateLimits } from "../update/index.ts";
import type { Io } from "./verb.ts";

/**
 * `keygen [--release] [--out DIR] [--force]`: writes DIR/queen.key (0600)
 * and DIR/queen.pub, or with `--release` the pair that signs disk images,
 * DIR/release.key (0600) and DIR/release.pub. DIR defaults to
 * ~/.config/cohesix.
 */
export async function keygen(p: Parsed, { env, out }: Io): Promise<void> {
  const dir = str(p, "out", configDir(env))!;
  const written = await writeKeyPair(dir, { name: p.values.release === true ? "release" : "queen", force: p.values.force === true });
  out(`${written.privatePath}\n${written.publicPath}\nkey id ${written.id}\n`);
}

/**
 * `ticket --role queen [--key FILE] [--ttl S] [--aud KEYID]`: prints a
 * signed ticket; with `--aud` (an appliance's `boot_key=` from /proc/boot)
 * it works on that appliance only.
 */
export async function ticket(p: Parsed, { env, out }: Io): Promise<void> {
  const role = required(p, "role", undefined, "e.g. --role queen, or --role worker-heartbeat --subject worker-1");
  const keyPath = str(p, "key", env.COHESIX_KEY ?? defaultQueenKey(env))!;
  const ttl = Number(str(p, "ttl", "3600"));
  if (!Number.isSafeInteger(ttl) || ttl <= 0) throw new UsageError("--ttl must be a positive number of seconds");
  const sub = str(p, "subject", role === "queen" ? "queen" : undefined);
  if (sub === undefined) throw new UsageError(`--subject is required for role ${role}: whom the ticket is for, e.g. --subject worker-1`);
  const aud = str(p, "aud");
  if (aud !== undefined && !/^[0-9a-f]{16}$/.test(aud)) throw new UsageError("--aud must be an appliance's boot key id, 16 hex digits (boot_key= in /proc/boot)");
  const key = role === "queen" ? await readQueenKey(keyPath) : await readPrivateKey(keyPath);
  out(`${mintTicket({ role, sub, ...(aud !== undefined ? { aud } : {}) }, key, { ttlS: ttl })}\n`);
}

/**
 * `serve --board host --listen HOST:PORT --state DIR [--queen-pub FILE]
 * [--gpu-bridge DIAL [--gpu-bridge-key FILE] [--gpu-bridge-pin SHA256]]
 * [--boot-dir DIR --release-pub FILE]`: with a boot folder laid out as an A/B
 * boot partition, publishes `/update/` writing into it;
 * mounts the GPU bridge at /gpu when given (key default
 * ~/.config/cohesix/bridge.key, which `cohesix gpu-bridge` makes), prints `READY tcp!HOST!PORT` once accepting, serves until SIGTERM/SIGINT.
 * In a project, its `files` are placed under `.cohesix/host/root/` and its
 * workers find them there through `COHESIX_ROOT` (the worker API's `appPath`).
 * `hooks` let `up --board host` record the running appliance.
 */
export async function serve(p: Parsed, io: Io, hooks: { onReady?: (dialString: string) => Promise<void>; onStopped?: () => Promise<void> } = {}): Promise<void> {
  const { env, out, signal } = io;
  // In a project folder (or with --project DIR) its workers are served too.
  const project = projectOf(p);
  const gpuDial = str(p, "gpu-bridge");
  const gpuKey = str(p, "gpu-bridge-key");
  const gpuPin = str(p, "gpu-bridge-pin");
  if (gpuDial === undefined && (gpuKey !== undefined || gpuPin !== undefined)) throw new UsageError("--gpu-bridge-key and --gpu-bridge-pin go with --gpu-bridge DIAL");
  if (gpuDial !== undefined) {
    try {
      parseDialString(gpuDial);
    } catch (err) {
      throw new UsageError(`--gpu-bridge ${(err as Error).message.replace(/^invalid: /, "")}`);
    }
  }
  const tlsKey = str(p, "tls-key");
  const tlsCert = str(p, "tls-cert");
  if ((tlsKey === undefined) !== (tlsCert === undefined)) throw new UsageError("--tls-key and --tls-cert go together");
  const tlsMode = str(p, "tls", "auto")!;
  if (tlsMode !== "auto" && tlsMode !== "on" && tlsMode !== "off") throw new UsageError("--tls must be auto, on or off");
  const policy = str(p, "policy", project?.nineDoor.policy ?? "open");
  const maxWorkersText = str(p, "max-workers");
  const maxWorkers = maxWorkersText === undefined ? undefined : Number(maxWorkersText);
  if (maxWorkers !== undefined && !(/^[1-9][0-9]{0,5}$/.test(maxWorkersText!) && maxWorkers <= 100_000)) {
    throw new UsageError(`--max-workers must be a whole number 1..100000, got ${JSON.stringify(maxWorkersText)}`);
  }
  if (policy !== "open" && policy !== "signed-ctl") throw new UsageError("--policy must be open or signed-ctl");
  const board = str(p, "board", "host")!;
  if (board !== "host") throw new UsageError(`board ${JSON.stringify(board)} is not served directly: use --board host (QEMU boards boot with cohesix boot)`);
  const listen = required(p, "listen", project ? `${project.nineDoor.host}:${project.nineDoor.port}` : undefined, "e.g. --listen 127.0.0.1:5640 (port 0 picks a free port)");
  try {
    parseListenAddress(listen);
  } catch (err) {
    // A malformed address is the user's typing: a usage error (exit 2).
    throw new UsageError(`--listen ${(err as Error).message.replace(/^invalid: /, "")}`);
  }
  // --limit takes NineDoor's limits (NAME=N) and the audit's (audit.NAME=N).
  const settings = (p.values.limit as string[] | undefined) ?? [];
  let limits;
  let audit;
  let updateLimits;
  try {
    limits = parseLimits(settings.filter((s) => !s.startsWith("audit.") && !s.startsWith("update.")));
    audit = parseAuditLimits(settings.filter((s) => s.startsWith("audit.")));
    updateLimits = parseUpdateLimits(settings.filter((s) => s.startsWith("update.")));
  } catch (err) {
    throw new UsageError(`--limit ${(err as Error).message.replace(/^invalid: limit /, "")}`);
  }
  const bootDir = str(p, "boot-dir");
  const releasePub = str(p, "release-pub");
  if (bootDir === undefined && (releasePub !== undefined || Object.keys(updateLimits).length > 0)) throw new UsageError("--release-pub and --limit update.* go with --boot-dir DIR");
  if (bootDir !== undefined && releasePub === undefined) throw new UsageError("--boot-dir needs --release-pub FILE: the release public key update bundles must be signed with");
  // Handle SIGTERM/SIGINT before READY is printed: a supervisor may signal
  // the moment it reads READY, and without a listener Node would die of it.
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  signal?.addEventListener("abort", onSignal, { once: true });
  try {
    const programs = project ? { ...BUILTIN_WORKERS, ...(await bundleForHost(project)) } : undefined;
    const root = project && project.files.length > 0 ? await placeForHost(project) : undefined;
    if (project) io.err(`serving project ${project.dir}: workers ${Object.keys(programs ?? {}).sort().join(", ")}${root ? `; files under ${root}` : ""}\n`);
    const fleet = fleetSettingsOf(p, project);
    const running = await serveAppliance({
      board,
      listen,
      ...(fleet ? { fleet } : {}),
      stateDir: required(p, "state", undefined, "a directory for the appliance's state, e.g. --state .cohesix/state"),
      queenPub: str(p, "queen-pub") ?? project?.queenPub ?? (await ensureDefaultQueenKey(env, io.err)),
      ...(programs ? { programs } : {}),
      ...(root ? { workerEnv: { COHESIX_ROOT: root } } : {}),
      policy,
      tlsMode,
      ...(maxWorkers !== undefined ? { maxWorkers } : {}),
      limits,
      ...(Object.keys(audit).length > 0 ? { audit } : {}),
      ...(bootDir !== undefined ? { bootDir, releasePub: releasePub!, ...(Object.keys(updateLimits).length > 0 ? { updateLimits } : {}) } : {}),
      ...(gpuDial !== undefined
        ? { gpuBridge: { dial: gpuDial, key: gpuKey ?? join(configDir(env), "bridge.key"), ...(gpuPin !== undefined ? { pin: gpuPin } : {}) } }
        : {}),
      ...(tlsKey && tlsCert ? { tls: { key: await readFile(tlsKey, "utf8"), cert: await readFile(tlsCert, "utf8") } } : {}),
    }).catch((err: unknown) => {
      throw inUse(err, listen);
    });
    try {
      await hooks.onReady?.(running.dialString);
      out(`READY ${running.dialString}\n`);
      if (!stop.signal.aborted) await once(stop.signal, "abort");
    } finally {
      await running.stop("SIGTERM");
      await hooks.onStopped?.();
    }
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  }
}

/**
 * The fleet link's settings of `serve`: the project's `fleet` block, with
 * `--fleet URL` and `--fleet-id ID` over its `url` and `id`; undefined
 * without either.
 *
 * @example
 * ```ts
 * fleetSettingsOf(parsed, project); // { url: "mqtt://127.0.0.1:1883", id: "app-1" }
 * ```
 */
export function fleetSettingsOf(p: Parsed, project: { readonly fleet?: FleetSettings } | undefined): FleetSettings | undefined {
  const url = str(p, "fleet");
  const id = str(p, "fleet-id");
  if (url !== undefined && !/^mqtts?:\/\/[^\s]+$/.test(url)) throw new UsageError(`--fleet ${url}: the broker must be mqtt://HOST:PORT or mqtts://HOST:PORT`);
  if (id !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw new UsageError(`--fleet-id ${JSON.stringify(id)}: must be 1-64 of A-Z a-z 0-9 . _ -`);
  const block = project?.fleet;
  if (url === undefined && block === undefined) {
    if (id !== undefined) throw new UsageError("--fleet-id goes with --fleet URL (or a fleet block in cohesix.config.json)");
    return undefined;
  }
  return { ...block, url: url ?? block!.url, ...(id !== undefined ? { id } : {}) };
}

/**
 * The default queen public key, made on first use (with its private half
 * beside it) so that `npm start` and the CLI's default `--key` pair up.
 */
async function ensureDefaultQueenKey(env: NodeJS.ProcessEnv, say: (text: string) => void): Promise<string> {
  const pub = defaultQueenPub(env);
  if (!existsSync(pub)) {
    const written = await writeKeyPair(configDir(env), { name: "queen" });
    say(`made queen key ${written.privatePath} (key id ${written.id})\n`);
  }
  return pub;
}
