/**
 * `cohesix gpu-bridge`: serves this host's GPUs (or simulated ones) over 9P
 * for an appliance to mount at `/gpu`.
 * @module
 */
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseListenAddress } from "../nine-door/index.ts";
import { BRIDGE_KEY_NAME, startBridge, type BackendChoice } from "../gpu-bridge/index.ts";
import { required, str, UsageError, type Parsed } from "./args.ts";
import { inUse } from "./hints.ts";
import { configDir } from "./paths.ts";
import type { Io } from "./verb.ts";

/** The default bridge key: `~/.config/cohesix/bridge.key` (made on first use). */
export function defaultBridgeKey(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), `${BRIDGE_KEY_NAME}.key`);
}

/**
 * `gpu-bridge --listen HOST:PORT [--backend auto|nvml|sim] [--key FILE]
 * [--tls-key FILE --tls-cert FILE] [--executor CMD]`: prints one
 * `READY tcp!HOST!PORT` line once serving (`tls!…` with TLS), diagnostics
 * on stderr, and serves until SIGTERM/SIGINT (exit 0).
 */
export async function gpuBridge(p: Parsed, io: Io): Promise<void> {
  const listen = required(p, "listen", undefined, "e.g. --listen 127.0.0.1:5650 (port 0 picks a free port)");
  try {
    parseListenAddress(listen);
  } catch (err) {
    throw new UsageError(`--listen ${(err as Error).message.replace(/^invalid: /, "")}`);
  }
  const backend = str(p, "backend", "auto")!;
  if (backend !== "auto" && backend !== "nvml" && backend !== "sim") throw new UsageError("--backend must be auto, nvml or sim");
  const tlsKey = str(p, "tls-key");
  const tlsCert = str(p, "tls-cert");
  if ((tlsKey === undefined) !== (tlsCert === undefined)) throw new UsageError("--tls-key and --tls-cert go together");
  const explicitKey = str(p, "key");
  const executor = str(p, "executor");

  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  io.signal?.addEventListener("abort", onSignal, { once: true });
  try {
    const bridge = await startBridge({
      listen,
      backend: backend as BackendChoice,
      key: explicitKey ?? defaultBridgeKey(io.env),
      // Only the default key is made on first use; a named one must exist.
      createKey: explicitKey === undefined,
      ...(executor === undefined ? {} : { executor }),
      ...(tlsKey && tlsCert ? { tls: { key: await readFile(tlsKey, "utf8"), cert: await readFile(tlsCert, "utf8") } } : {}),
      log: (line) => io.err(`gpu-bridge: ${line}\n`),
    }).catch((err: unknown) => {
      throw inUse(err, listen);
    });
    if (bridge.fingerprint) io.err(`gpu-bridge: TLS certificate fingerprint ${bridge.fingerprint} (clients pin it)\n`);
    io.out(`READY ${bridge.dialString}\n`);
    if (!stop.signal.aborted) await once(stop.signal, "abort");
    await bridge.stop("SIGTERM");
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  }
}
