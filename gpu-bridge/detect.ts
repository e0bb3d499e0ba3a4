/**
 * Picking a backend: real when nvidia-smi answers, simulated otherwise.
 * @module
 */
import { InvalidError } from "../nine-door/index.ts";
import { NvmlBackend, type NvmlBackendOptions } from "./nvml.ts";
import { SimBackend, type SimBackendOptions } from "./sim.ts";
import type { GpuBackend } from "./types.ts";

/** What `--backend` accepts. */
export type BackendChoice = "auto" | "nvml" | "sim";

/**
 * Options of {@link detectBackend}.
 *
 * @example
 * ```ts
 * const opts: DetectOptions = { nvml: { executor: "./run-kernel" }, sim: { timeScale: 1 } };
 * ```
 */
export interface DetectOptions {
  readonly nvml?: NvmlBackendOptions;
  readonly sim?: SimBackendOptions;
}

/**
 * The chosen backend and why, for the bridge's first log line.
 *
 * @example
 * ```ts
 * const { backend, reason } = await detectBackend("auto");
 * console.error(`gpu-bridge: ${backend.kind}: ${reason}`);
 * ```
 */
export interface DetectedBackend {
  readonly backend: GpuBackend;
  readonly reason: string;
}

/**
 * Chooses a backend. `sim` always gives the simulator; `nvml` gives the real
 * backend and throws the {@link GpuDriverError} if nvidia-smi cannot list
 * GPUs; `auto` asks nvidia-smi and falls back to the simulator, saying why.
 *
 * @example
 * ```ts
 * const { backend, reason } = await detectBackend("auto", { nvml: { executor: "./run-kernel" } });
 * // sim: "nvidia-smi not found: install the NVIDIA driver utilities …; using the simulated GPUs"
 * ```
 */
export async function detectBackend(choice: BackendChoice, options: DetectOptions = {}): Promise<DetectedBackend> {
  if (choice === "sim") return { backend: new SimBackend(options.sim), reason: "--backend sim asked for the simulated GPUs" };
  if (choice !== "nvml" && choice !== "auto") {
    throw new InvalidError(`backend ${JSON.stringify(choice)}: use auto, nvml or sim`);
  }
  const nvml = new NvmlBackend(options.nvml);
  try {
    const gpus = await nvml.listGpus();
    if (gpus.length === 0) {
      if (choice === "nvml") throw new InvalidError("nvidia-smi answered but lists no GPUs: check `nvidia-smi -L`");
      return { backend: new SimBackend(options.sim), reason: "nvidia-smi answered but lists no GPUs; using the simulated GPUs" };
    }
    return { backend: nvml, reason: `nvidia-smi answered with ${gpus.length} GPU(s), driver ${gpus[0]!.driver_version}` };
  } catch (err) {
    if (choice === "nvml") throw err;
    const why = err instanceof Error ? err.message.replace(/^io: /, "") : String(err);
    return { backend: new SimBackend(options.sim), reason: `${why}; using the simulated GPUs` };
  }
}
