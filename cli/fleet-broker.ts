/**
 * How a `cohesix fleet` verb reaches the broker: `--broker URL`, else
 * `COHESIX_BROKER`, else the `fleet` block of the project's
 * `cohesix.config.json` (its `url`, `prefix` and `ca`; its login is the
 * appliance's, not the operator's, so it is not used); TLS pinning with `--ca`, a client certificate, and
 * password login with `--username` and `--password-file` (or
 * `COHESIX_BROKER_PASSWORD`; a password is never an argument, which `ps`
 * would show).
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { FleetHost, type FleetHostOptions } from "../fleet/index.ts";
import { NotFoundError } from "../nine-door/index.ts";
import { type Parsed, UsageError, str } from "./args.ts";

/** Where and how to connect, resolved from the command line, the environment and the project. */
export interface BrokerChoice {
  readonly url: string;
  readonly prefix: string;
  readonly options: FleetHostOptions;
}

interface FleetBlock {
  broker?: unknown;
  url?: unknown;
  prefix?: unknown;
  ca?: unknown;
}

/** The `fleet` block of `DIR/cohesix.config.json`, or an empty one. */
function projectFleet(dir: string): { block: FleetBlock; dir: string } {
  const file = join(dir, "cohesix.config.json");
  if (!existsSync(file)) return { block: {}, dir };
  try {
    const value = JSON.parse(readFileSync(file, "utf8")) as { fleet?: unknown };
    const fleet = value.fleet;
    return { block: typeof fleet === "object" && fleet !== null ? (fleet as FleetBlock) : {}, dir };
  } catch {
    return { block: {}, dir };
  }
}

function text(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

/**
 * Resolves the broker options of a fleet verb and reads the files they name.
 *
 * @example
 * ```ts
 * const { url, prefix, options } = await brokerChoice(p, io.env);
 * const host = await FleetHost.connect(url, options);
 * ```
 */
export async function brokerChoice(p: Parsed, env: NodeJS.ProcessEnv): Promise<BrokerChoice> {
  const project = projectFleet(resolve(str(p, "project") ?? "."));
  const url = str(p, "broker") ?? text(env.COHESIX_BROKER) ?? text(project.block.url) ?? text(project.block.broker);
  if (url === undefined) throw new UsageError("--broker is required: give --broker mqtt://HOST:PORT, set COHESIX_BROKER, or add a fleet block with url to cohesix.config.json");
  const prefix = str(p, "prefix") ?? text(project.block.prefix) ?? "cohesix";
  const caPath = str(p, "ca") ?? (text(project.block.ca) !== undefined ? resolve(project.dir, text(project.block.ca)!) : undefined);
  const username = str(p, "username") ?? text(env.COHESIX_BROKER_USER);
  const passwordFile = str(p, "password-file");
  const password = passwordFile !== undefined ? (await readOption(passwordFile, "--password-file")).toString("utf8").replace(/\r?\n$/, "") : text(env.COHESIX_BROKER_PASSWORD);
  const certPath = str(p, "client-cert");
  const keyPath = str(p, "client-key");
  if ((certPath === undefined) !== (keyPath === undefined)) throw new UsageError("--client-cert and --client-key go together");
  const options: FleetHostOptions = {
    ...(caPath !== undefined ? { ca: await readOption(caPath, "--ca") } : {}),
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(certPath !== undefined ? { cert: await readOption(certPath, "--client-cert") } : {}),
    ...(keyPath !== undefined ? { key: await readOption(keyPath, "--client-key") } : {}),
  };
  return { url, prefix, options };
}

/**
 * Connects with the resolved choice.
 *
 * @example
 * ```ts
 * const { host, prefix } = await connectBroker(p, io.env);
 * ```
 */
export async function connectBroker(p: Parsed, env: NodeJS.ProcessEnv, extra: Partial<FleetHostOptions> = {}): Promise<{ host: FleetHost; prefix: string }> {
  const choice = await brokerChoice(p, env);
  const host = await FleetHost.connect(choice.url, { ...choice.options, ...extra });
  return { host, prefix: choice.prefix };
}

async function readOption(path: string, option: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new NotFoundError(`fleet: cannot read ${option} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
