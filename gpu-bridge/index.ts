/**
 * The host GPU bridge: GPUs discovered through NVML (`nvidia-smi`) or
 * simulated, served over 9P as `/<gpu-id>/{info,ctl,lease,job,status}`
 * with leases and job queues behind the files (DESIGN §5, docs/gpu-bridge.md).
 * This entry only documents and re-exports; other folders import from here.
 *
 * - `types.ts` — {@link GpuBackend}, {@link GpuInfo}, {@link JobDescriptor}, typed errors.
 * - `smi-parse.ts` — parsers for nvidia-smi's CSV and XML, {@link smiFailure}.
 * - `nvml.ts` — {@link NvmlBackend}; `sim.ts` — {@link SimBackend};
 *   `detect.ts` — {@link detectBackend}.
 * - `leases.ts` — {@link LeaseBook}; `jobs.ts` — {@link JobRunner},
 *   {@link parseJobDescriptor}, {@link makeJobDescriptor}.
 * - `bridge.ts` — {@link startBridge}, {@link mintBridgeTicket}, {@link ensureBridgeKey}.
 *
 * @example
 * ```ts
 * import { startBridge, mintBridgeTicket, ensureBridgeKey } from "../gpu-bridge/index.ts";
 * import { NineClient } from "../nine-door/index.ts";
 * const bridge = await startBridge({ listen: "127.0.0.1:0", backend: "sim", key: "/tmp/k/bridge.key" });
 * const { privateKey } = await ensureBridgeKey("/tmp/k/bridge.key");
 * const top = await (await NineClient.dial(bridge.dialString)).attach({ aname: mintBridgeTicket(privateKey) });
 * await top.writeFile("GPU-0/ctl", "LEASE worker-1 mem=4096 streams=2 priority=0 ttl=60");
 * ```
 * @module
 */
export {
  GpuDriverError,
  JobFailedError,
  SmiFormatError,
  infoRecord,
  type BackendKind,
  type GpuBackend,
  type GpuInfo,
  type GpuProcess,
  type JobDescriptor,
  type JobResult,
  type RunRequest,
} from "./types.ts";
export {
  APPS_QUERY_FIELDS,
  GPU_QUERY_FIELDS,
  gpusFromSmi,
  parseComputeApps,
  parseGpuCsv,
  parseSmiXml,
  smCountOf,
  smiFailure,
  type SmiGpuRow,
  type SmiMigDevice,
  type SmiXmlGpu,
  type SmiXmlLog,
  type SmiXmlProcess,
} from "./smi-parse.ts";
export { NvmlBackend, type NvmlBackendOptions } from "./nvml.ts";
export { DEFAULT_SIM_GPUS, SimBackend, simDurationMs, type SimBackendOptions, type SimGpuSpec } from "./sim.ts";
export { detectBackend, type BackendChoice, type DetectOptions, type DetectedBackend } from "./detect.ts";
export {
  DEFAULT_LEASE_LIMITS,
  LEASE_SCHEMA,
  LeaseBook,
  WORKER_ID,
  parseCtlCommand,
  type CtlCommand,
  type Lease,
  type LeaseBookOptions,
  type LeaseLimits,
  type LeaseRecord,
  type LeaseRequest,
} from "./leases.ts";
export {
  DEFAULT_JOB_LIMITS,
  JobRunner,
  makeJobDescriptor,
  parseJobDescriptor,
  type JobLimits,
  type JobRunnerOptions,
  type ParsedJob,
  type StatusRecord,
} from "./jobs.ts";
export {
  BRIDGE_KEY_NAME,
  BRIDGE_ROLE,
  ensureBridgeKey,
  mintBridgeTicket,
  startBridge,
  type BridgeOptions,
  type RunningBridge,
} from "./bridge.ts";
