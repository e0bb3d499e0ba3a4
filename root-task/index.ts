/**
 * The root task's identity and authority: Ed25519 keys and key files,
 * capability tickets, and the appliance's access policy (DESIGN §4, §5).
 * This entry only documents and re-exports; other folders import from here.
 *
 * - `keys.ts` — {@link generateKeyPair}, {@link writeKeyPair},
 *   {@link readPrivateKey}, {@link readPublicKey}, {@link keyId}, signing.
 * - `ticket.ts` — {@link mintTicket}, {@link verifyTicket},
 *   {@link decodeTicketUnverified}.
 * - `policy.ts` — {@link authorize}, {@link visibleChildren},
 *   {@link normalisePath}.
 * - `device-cert.ts` — the device TLS certificate, issued by the boot key:
 *   {@link loadDeviceCert}, {@link certificateAudience}.
 * - `tls-mode.ts` — `auto|on|off` and the rule `auto` follows: {@link chooseTls}.
 *
 * @example
 * ```ts
 * import { generateKeyPair, mintTicket, verifyTicket, authorize } from "../root-task/index.ts";
 * const boot = await generateKeyPair();
 * const token = mintTicket({ role: "worker-heartbeat", sub: "worker-1" }, boot.privateKey);
 * const t = verifyTicket(token, { keys: [boot.publicKey] });
 * authorize({ role: t.role, subject: t.sub }, "/worker/worker-1/telemetry", "write");
 * ```
 * @module
 */
export {
  KEY_BYTES,
  SIGNATURE_BYTES,
  decodeBase64url,
  formatPrivateKey,
  formatPublicKey,
  generateKeyPair,
  keyId,
  parsePrivateKey,
  parsePublicKey,
  publicKeyOf,
  readPrivateKey,
  readPublicKey,
  sign,
  verifySignature,
  writeKeyPair,
} from "./keys.ts";
export type { KeyFileOptions, KeyPair, ParsedKey, WriteKeyPairOptions, WrittenKeyPair } from "./keys.ts";
export {
  DEFAULT_SKEW_S,
  DEFAULT_TICKET_TTL_S,
  MAX_TICKET_LENGTH,
  NONCE_BYTES,
  TICKET_LIMITS,
  TICKET_VERSION,
  decodeTicketUnverified,
  mintTicket,
  verifyTicket,
} from "./ticket.ts";
export type { MintOptions, Ticket, TicketBudget, TicketClaims, TicketKeys, VerifyOptions } from "./ticket.ts";
export { DEVICE_CERT_FILE, DEVICE_KEY_FILE, certificateAudience, fingerprintOf, loadDeviceCert, makeDeviceCert, type DeviceCert } from "./device-cert.ts";
export { TLS_SETTINGS, chooseTls, isLoopbackHost, parseTlsSetting, type TlsChoice, type TlsSetting } from "./tls-mode.ts";
export { ACCESS_OPS, authorize, isAuthorized, isWorkerRole, normalisePath, visibleChildren } from "./policy.ts";
export type { AccessOp, PolicyCaller } from "./policy.ts";
export {
  Appliance,
  DEFAULT_REFUSED_ROTATE_BYTES,
  VERSION,
  type ApplianceOptions,
  type AuditLimits,
  type LifecycleState,
} from "./appliance.ts";
export { DEFAULT_AUDIT_FILE_LIMITS, type AuditFileLimits } from "./audit-file.ts";
export { AUDIT_LIMIT_NAMES, parseAuditLimits } from "./audit-limits.ts";
export { DEFAULT_REFUSAL_LIMITS, RefusalAudit, peerSource, type Refusal, type RefusalLimits } from "./refusal-audit.ts";
export { MAX_TIMER_MS, SessionExpiry, type SessionExpiryOptions, type WatchedSession } from "./session-expiry.ts";
export { defaultBridgeKeyPath, serveAppliance, type GpuBridgeFiles, type RunningAppliance, type ServeOptions } from "./serve.ts";
export { startFleet, FLEET_SUBJECT, type FleetSettings, type RunningFleet } from "./fleet-link.ts";
export { FLEET_ROLE } from "./control.ts";
export { FW_CFG_BY_NAME, FW_CFG_GPU_BRIDGE, formatGuestBridge, guestGpuBridge, parseGuestBridge, type GuestBridge } from "./guest-bridge.ts";
export {
  CLOCK_WATCH_MS,
  DEFAULT_STEP_THRESHOLD_S,
  GuestClock,
  HWCLOCK_PID_ENV,
  RTC_DEVICE,
  RTC_SINCE_EPOCH,
  STEP_RETRY_MS,
  hwclockCommand,
  signalStep,
  type ClockCheck,
  type ClockStep,
  type GuestClockOptions,
} from "./guest-clock.ts";
export { GPU_BRIDGE_DOWN, GpuMount, type BridgeLeaseRecord, type GpuBridgeConfig, type GpuMountHost } from "./gpu-mount.ts";
export { checkGpuWrite, guardGpuMount } from "./gpu-guard.ts";
export { commitLogKey } from "./appliance.ts";
export { COMMIT_KINDS, applyCommit, commitFromRecord, genesis, runningWorkers, type ApplianceState, type Commit, type WorkerState } from "./state.ts";
export { CTR_MAX_STEP } from "./limits.ts";
export { signEnvelope, signFleetCommand, openEnvelope, isEnvelope, StaleCounterError, type OpenedEnvelope, type EnvelopeAddress } from "./signed-ctl.ts";
export { LIFECYCLE_WORDS } from "./control.ts";
export { parseQueenCommand, queenCommandOf, parseBudget, type Budget, type LeaseRequest, type ParseOptions, type QueenCommand } from "./queen-command.ts";
export {
  CommitLog,
  LOG_FILE,
  MIN_LOG_KEY_BYTES,
  nodeCommitLogFs,
  type CommitLogFile,
  type CommitLogFs,
  type CommitLogOptions,
  type CommitLogStats,
} from "./commit-log.ts";
export { formatRecord, showLog, verifyLog, type ShowLogOptions, type VerifyReport } from "./commit-log-tools.ts";
export {
  FRAME_HEADER_BYTES,
  FRAME_TAG_BYTES,
  HASH_BYTES,
  LogCorruptionError,
  MAX_RECORD_BYTES,
  encodeBody,
  encodeFrame,
  hex,
  replay,
  scanLog,
  type CommitKind,
  type CommitRecord,
  type EncodedFrame,
  type FrameInput,
  type LogProblem,
  type ScanResult,
  type TornTail,
} from "./commit-log-format.ts";
export { LOCK_FILE, acquireLogLock, type LogLock } from "./commit-log-lock.ts";
export {
  BOOT_MANIFEST_FORMAT,
  BOOT_MANIFEST_PATH,
  canonicalJson,
  checkBootManifest,
  checkDocumentSignature,
  hashFile,
  manifestVersion,
  NO_VERSION,
  parseArtefact,
  parseBootManifest,
  signDocument,
  VERSION_PATTERN,
  signedBytes,
  type BootArtefact,
  type BootManifest,
  type BootManifestCheck,
  type CheckBootManifestOptions,
} from "./boot-manifest.ts";
export { BUILTIN_WORKERS, workerProgram, type WorkerProgram, type WorkerProgramOptions } from "./programs.ts";
export { Supervisor, type SpawnOptions, type StopWorkerOptions, type SupervisorOptions, type WorkerExit } from "./supervisor.ts";
export {
  SLOT_BOOT_KINDS,
  TRY_FAILURE_FILE,
  UNRECORDED_FAILURE,
  checkSlotManifest,
  clearTryFailure,
  readTryFailure,
  recordTryFailure,
  slotBootOf,
  slotLines,
  slotManifestDigest,
  slotReport,
  type CheckSlotManifestOptions,
  type SlotBoot,
  type SlotBootKind,
  type SlotReport,
  type TryFailure,
} from "./slot.ts";
export { DEFAULT_HEALTH_DEADLINE_MS, DEFAULT_HEALTH_WINDOW_MS, awaitHealth, markSlotGood, type HealthOptions, type HealthVerdict, type MarkSlotGoodOptions, type WatchedWorker } from "./slot-health.ts";
export { GuestSlot, type GuestSlotOptions, type SettleOptions, type SlotAppliance } from "./guest-slot.ts";
export { DEFAULT_FEED_MS, Watchdog, type WatchdogOptions } from "./watchdog.ts";
