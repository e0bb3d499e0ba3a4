/**
 * QEMU for the boards: the command line and launcher (execa), the console
 * watcher, the QMP client, and the VM as the CLI drives it (boot until
 * serving, stop by PID, pause/resume/snapshot/restore). This entry only
 * documents and re-exports.
 *
 * - `launcher.ts` — {@link qemuArgs}, {@link rtcArg}, {@link launchQemu}, {@link createStateDisk}, {@link QemuMissingError}.
 * - `console.ts` — {@link ConsoleWatcher}, {@link GuestPanicError}.
 * - `qmp.ts` — {@link QmpClient}.
 * - `vm.ts` — {@link bootVm}, {@link stopVm}, {@link vmControl}, {@link vmPaths}, {@link runningBoards}, {@link listSnapshots}.
 *
 * @example
 * ```ts
 * import { bootVm, stopVm, vmPaths } from "../qemu/index.ts";
 * const vm = await bootVm({ board, kernel, initrd, cmdline, baseDir: ".cohesix", detached: true });
 * console.log(vm.info.dialString);
 * await stopVm(vmPaths(".cohesix", board.name));
 * ```
 * @module
 */
export { ConsoleWatcher, GuestPanicError, type ConsoleWatcherOptions, type WaitForOptions } from "./console.ts";
export {
  QemuMissingError,
  consolePty,
  createStateDisk,
  launchQemu,
  packageOf,
  qemuArgs,
  rtcArg,
  WATCHDOG_DEVICE,
  type DiskBoot,
  type LaunchOptions,
  type LaunchedQemu,
  type QemuArgsOptions,
  type QemuBoard,
  type RtcOptions,
  type StateDiskOptions,
} from "./launcher.ts";
export { QmpClient, QmpError, checkName, type QmpConnectOptions, type QmpEvent } from "./qmp.ts";
export {
  alive,
  bootVm,
  listSnapshots,
  runningBoards,
  runningVm,
  stopVm,
  vmControl,
  vmPaths,
  waitNineDoor,
  type BootVmOptions,
  type RunningVm,
  type StopHow,
  type StopVmOptions,
  type VmInfo,
  type VmOp,
  type VmPaths,
} from "./vm.ts";
