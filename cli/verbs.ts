/**
 * The table of `cohesix` verbs: **a new verb is declared here, and only
 * here.** Each entry names its arguments, its options (types, defaults,
 * choices), a one-line summary, a description (the README's table cell)
 * and at least one example; `run` loads the verb's implementation with a
 * dynamic import, so that `cohesix ls` never loads esbuild or QEMU's
 * launcher. From this table come `cohesix VERB --help`, `cohesix help VERB`,
 * the global usage, "did you mean", `cohesix completion bash|zsh` and the
 * README's command table (`cohesix help --markdown`; test/cli/help.test.ts
 * checks README.md against it).
 *
 * A verb's implementation takes the parsed command line and the Io:
 * `(p: Parsed, io: Io) => Promise<void>`; it throws `UsageError` (exit 2),
 * a `NineError` (exit 1, `class: message`) or anything else (exit 1, `io:`).
 * @module
 */
import { UsageError } from "./args.ts";
import { BOOT_OPTIONS, BROKER_OPTIONS, BUILD_OPTIONS, FLEET_OPTIONS, GPU_BRIDGE_OPTIONS, REMOTE_OPTIONS, SELECT_OPTIONS } from "./options.ts";
import type { Verb } from "./verb.ts";

/**
 * Loads a data verb's module without msgpackr's native addon, which speeds
 * up unpacking large records and costs a command that packs one ticket
 * ~25 ms to load (the addon is read at msgpackr's load, so the variable is
 * set only around the import and children never see it).
 */
async function light<T>(load: () => Promise<T>): Promise<T> {
  const name = "MSGPACKR_NATIVE_ACCELERATION_DISABLED";
  const before = process.env[name];
  process.env[name] = "true";
  try {
    return await load();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

const VM_OPTIONS = {
  board: { type: "string", value: "BOARD", help: "the board whose VM", default: "aarch64-virt" },
  dir: { type: "string", value: "DIR", help: "the working folder", defaultNote: ".cohesix" },
} as const;

/** Every verb, in the order of the usage and the README's table. */
export const VERBS: readonly Verb[] = [
  {
    name: "new",
    summary: "scaffold an appliance project",
    description:
      "scaffolds an appliance project: the `cohesix` package as a dependency, `cohesix.config.json`, an example worker and its test; refuses a folder that is not empty",
    args: [{ name: "DIR", help: "the folder to create" }],
    options: {
      name: { type: "string", value: "NAME", help: "the project's name", defaultNote: "the folder's name" },
      cohesix: { type: "string", value: "SPEC", help: "the cohesix dependency as npm takes it, e.g. ./cohesix-0.1.0.tgz", defaultNote: "^VERSION" },
    },
    examples: ["cohesix new my-appliance", "cohesix new my-appliance --cohesix ./cohesix-0.1.0.tgz"],
    run: async (p, io) => (await import("./project.ts")).newCommand(p, io),
  },
  {
    name: "test",
    summary: "run the project's tests",
    description: "bundles the project's `test/**/*.test.ts` with esbuild and runs them with `node --test`",
    options: { project: { type: "string", value: "DIR", help: "the project", defaultNote: "the current folder" } },
    examples: ["cohesix test", "cohesix test --project my-appliance"],
    run: async (p, io) => (await import("./project.ts")).testCommand(p, io),
  },
  {
    name: "keygen",
    summary: "make a queen (or release) key pair",
    description:
      "writes `DIR/queen.key` (0600) and `DIR/queen.pub`, or with `--release` the pair that signs disk images, `DIR/release.key` and `DIR/release.pub`; default DIR `~/.config/cohesix`; refuses to overwrite without `--force`",
    options: {
      release: { type: "boolean", help: "the release pair, which signs disk images" },
      out: { type: "string", value: "DIR", help: "where the pair goes", defaultNote: "~/.config/cohesix" },
      force: { type: "boolean", help: "overwrite an existing pair" },
    },
    examples: ["cohesix keygen", "cohesix keygen --release --out keys"],
    run: async (p, io) => (await import("./local.ts")).keygen(p, io),
  },
  {
    name: "serve",
    summary: "run the appliance on this machine",
    description:
      "runs the appliance on this machine; prints exactly one `READY tcp!HOST!PORT` line on stdout once it accepts connections (port 0 picks a free port); exits 0 on SIGTERM. The state directory keeps the boot key, the commit log and the workers' Unix socket; a restart with the same directory brings back the same workers. In a project folder (or with `--project DIR`) it also serves the project's workers, bundled into `.cohesix/host/workers/`, and takes its listen address, policy and queen key from `cohesix.config.json`",
    options: {
      board: { type: "string", value: "BOARD", help: "only host is served directly", default: "host" },
      listen: { type: "string", value: "HOST:PORT", help: "where to serve (tls!HOST!PORT with --tls-key/--tls-cert)", required: true },
      state: { type: "string", value: "DIR", help: "the appliance's state folder", required: true },
      project: { type: "string", value: "DIR", help: "an appliance project other than the current folder's" },
      "queen-pub": { type: "string", value: "FILE", help: "the queen public key tickets are checked against", defaultNote: "~/.config/cohesix/queen.pub, made on first use" },
      policy: { type: "string", value: "POLICY", help: "how /queen/ctl takes commands", choices: ["open", "signed-ctl"], defaultNote: "the project's, else open" },
      "max-workers": { type: "string", value: "N", help: "most workers running at once; a spawn past it answers busy:", defaultNote: "half the memory at 32 MiB a worker, 4..512" },
      tls: { type: "string", value: "MODE", help: "TLS or plain TCP; auto is TLS unless the address is loopback, with the device certificate made at first boot", choices: ["auto", "on", "off"], default: "auto" },
      "tls-key": { type: "string", value: "FILE", help: "serve TLS with this private key instead of the device's (with --tls-cert)" },
      "tls-cert": { type: "string", value: "FILE", help: "serve TLS with this certificate instead of the device's (with --tls-key)" },
      "gpu-bridge": GPU_BRIDGE_OPTIONS["gpu-bridge"]!,
      "gpu-bridge-key": GPU_BRIDGE_OPTIONS["gpu-bridge-key"]!,
      "gpu-bridge-pin": GPU_BRIDGE_OPTIONS["gpu-bridge-pin"]!,
      ...FLEET_OPTIONS,
      "boot-dir": { type: "string", value: "DIR", help: "a folder laid out as an A/B boot partition (state.env, a/, b/): publish /update/ writing into its inactive slot, running the state's active slot" },
      "release-pub": { type: "string", value: "FILE", help: "with --boot-dir: the release public key update bundles must be signed with" },
      limit: { type: "string", multiple: true, value: "NAME=N", help: "a limit from docs/security.md: NineDoor's, e.g. max_conns_per_peer=64 (/proc/sessions shows those in force), the audit's, e.g. audit.reserve_bytes=2097152, or the update service's, e.g. update.max_bundle_bytes=536870912 (repeatable)" },
    },
    examples: ["cohesix serve --listen 127.0.0.1:5640 --state .cohesix/state", "cohesix serve --listen 0.0.0.0:5640 --state .cohesix/state --tls auto", "cohesix serve --listen 127.0.0.1:0 --state /tmp/st --policy signed-ctl", "cohesix serve --listen 127.0.0.1:0 --state /tmp/st --boot-dir /tmp/boot --release-pub ~/.config/cohesix/release.pub", "cohesix serve --listen 127.0.0.1:0 --state /tmp/st --fleet mqtt://127.0.0.1:1883 --fleet-id app-1"],
    run: async (p, io) => (await import("./local.ts")).serve(p, io),
  },
  {
    name: "fetch",
    summary: "get a board's pinned artefacts into the cache",
    description:
      "downloads (or takes from `--from DIR`), verifies and unpacks the board's pinned artefacts (Node.js, sysroot, busybox, kernel and modules) and its native addon packages into `~/.cache/cohesix`; prints the unpacked paths. `build`, `boot`, `up` and `image` fetch what is missing themselves; `--offline` never downloads. Like `build` and `image`, it shows its progress on stderr when that is a terminal, and only a one-line summary otherwise",
    options: {
      board: { type: "string", value: "BOARD", help: "the board", default: "aarch64-virt" },
      from: { type: "string", value: "DIR", help: "take the artefacts from DIR instead of downloading them" },
      offline: { type: "boolean", help: "use only the cache; never download" },
    },
    examples: ["cohesix fetch", "cohesix fetch --offline"],
    run: async (p, io) => (await import("./fetch.ts")).fetch(p, io),
  },
  {
    name: "build",
    summary: "build the board's initramfs",
    description:
      "builds the board's initramfs (`initramfs.cpio.gz`, kernel `Image`, `manifest.json` with every file's sha256 and the image digest) from the artefacts `cohesix fetch` cached; bakes the queen public key in (default `~/.config/cohesix/queen.pub`, made on first use); the same inputs give the same bytes. The image carries the `heartbeat` and `gpu` workers; `--worker inference` adds the inference worker with sharp's pinned linux-arm64 packages. `--offline` builds from the cache alone. In a project folder (or with `--project DIR`) the image carries the project's workers and files, and `build`, `boot` and `up` take the board, key, policy and port from `cohesix.config.json`",
    options: BUILD_OPTIONS,
    examples: ["cohesix build", "cohesix build --worker inference --extra ./model.bin:/opt/model.bin"],
    run: async (p, io) => (await import("./vm.ts")).build(p, io),
  },
  {
    name: "boot",
    summary: "boot the image in QEMU",
    description:
      "builds if needed, starts QEMU (console in `.cohesix/run/<board>/console.log`, state disk `.cohesix/vm/<board>/state.qcow2`), waits until the guest serves, prints the dial string `tcp!127.0.0.1!PORT` (`tls!…` when the guest serves TLS, e.g. with `--append cohesix.tls=on`) and a queen command; stays attached, or with `--detach` leaves a pid file in `.cohesix/run/<board>/`. `--restore NAME` boots from a snapshot; the guest sets its clock from the board's RTC, which follows the host's clock, so a restored or resumed guest checks tickets against the host's time. `--rtc-base DATE` (`2030-01-01[T12:00:00]`, UTC) starts the RTC elsewhere, `--rtc-clock vm` runs it on VM time. `--gpu-bridge DIAL` has the guest mount the host's GPU bridge at `/gpu` (a `127.0.0.1` address becomes `10.0.2.2` for the guest); `--gpu-bridge-key FILE` (default `~/.config/cohesix/bridge.key`), `--gpu-bridge-pin SHA256` (TLS), `--gpu-bridge-ttl S` (the guest's ticket, default 86400). `--disk FILE` boots a flashed disk image (`cohesix image`, `cohesix flash --target-file`) through the board's U-Boot instead, as the board would, with the console also on a pty",
    options: BOOT_OPTIONS,
    examples: ["cohesix boot --detach", "cohesix boot --restore incident-42", "cohesix boot --disk card.img --detach"],
    run: async (p, io) => (await import("./vm.ts")).boot(p, io),
  },
  {
    name: "up",
    summary: "build, boot and wait (npm start)",
    description:
      "build + boot + wait (`npm start`), with their options; `--board host` serves on this machine without a VM, recorded in `.cohesix/run/host/` like a VM (with `--detach` it returns once serving). Refuses, before building, while a VM or host board of this folder runs",
    options: BOOT_OPTIONS,
    examples: ["cohesix up --detach", "cohesix up --board host --detach", "cohesix up --detach --worker inference --gpu-bridge 127.0.0.1:5650"],
    run: async (p, io) => (await import("./vm.ts")).up(p, io),
  },
  {
    name: "down",
    summary: "stop the board's VM",
    description:
      "stops the VM: the power key (the guest closes its commit log and powers off), else QMP quit, else SIGTERM/SIGKILL by PID; `--board host` stops the host board `up --board host` started, by PID",
    options: VM_OPTIONS,
    examples: ["cohesix down", "cohesix down --board host"],
    run: async (p, io) => (await import("./vm.ts")).down(p, io),
  },
  {
    name: "vm",
    summary: "pause, resume, snapshot, restore the VM or list its snapshots",
    description: "QMP controls of the running VM",
    subverbs: [
      { name: "pause", summary: "pause the VM", description: "stops the guest's CPUs; `cohesix vm resume` goes on", options: VM_OPTIONS, examples: ["cohesix vm pause"], run: async (p, io) => (await import("./vm.ts")).vm("pause", p, io) },
      { name: "resume", summary: "resume a paused VM", description: "starts the guest's CPUs again", options: VM_OPTIONS, examples: ["cohesix vm resume"], run: async (p, io) => (await import("./vm.ts")).vm("resume", p, io) },
      {
        name: "snapshot",
        summary: "save the VM into its state disk",
        description: "saves the VM into its state disk and leaves it paused (the kill switch)",
        args: [{ name: "NAME", help: "the snapshot's name" }],
        options: VM_OPTIONS,
        examples: ["cohesix vm snapshot incident-42"],
        run: async (p, io) => (await import("./vm.ts")).vm("snapshot", p, io),
      },
      {
        name: "restore",
        summary: "load a snapshot into the running VM",
        description: "loads a snapshot into the running VM; a name the state disk does not hold is refused, naming those it does (`cohesix vm snapshots`)",
        args: [{ name: "NAME", help: "the snapshot's name" }],
        options: VM_OPTIONS,
        examples: ["cohesix vm restore incident-42"],
        run: async (p, io) => (await import("./vm.ts")).vm("restore", p, io),
      },
      {
        name: "snapshots",
        summary: "list the snapshots in the state disk",
        description: "lists the snapshots in the board's state disk, one name per line (what `vm restore` and `boot --restore` take)",
        options: VM_OPTIONS,
        examples: ["cohesix vm snapshots"],
        run: async (p, io) => (await import("./vm.ts")).vmSnapshots(p, io),
      },
    ],
  },
  {
    name: "image",
    summary: "build a flashable disk image",
    description:
      "builds the board's flashable disk image: an MBR disk with a FAT boot partition (`/Image`, `/initrd.gz`, U-Boot's `/extlinux/extlinux.conf`, the signed boot manifest) and an ext4 data partition for the commit log, plus `FILE.manifest.json` (sha256 of the image and of every boot file, signed with the release key, default `~/.config/cohesix/release.key`, made on first use). `--append` adds to the kernel command line in its extlinux.conf, `--policy` sets how /queen/ctl takes commands. `--ab` makes two boot slots (`/a`, `/b`) and U-Boot's try-counting `boot.scr` with the boot state instead of extlinux.conf, for field updates ([docs/updates.md](docs/updates.md)). The appliance checks the boot manifest at boot and shows its digest in `/proc/boot`. Reproducible. See [docs/flash.md](docs/flash.md)",
    options: {
      out: { type: "string", value: "FILE", help: "the disk image to write", required: true },
      board: { type: "string", value: "BOARD", help: "the board", defaultNote: "the project's, else aarch64-virt" },
      project: BUILD_OPTIONS.project!,
      key: { type: "string", value: "FILE", help: "the release private key that signs the manifest", defaultNote: "~/.config/cohesix/release.key, made on first use" },
      "queen-pub": BUILD_OPTIONS["queen-pub"]!,
      policy: BUILD_OPTIONS.policy!,
      extra: BUILD_OPTIONS.extra!,
      "data-mb": { type: "string", value: "N", help: "the data partition's size in MiB (default: the board's; with --ab, plus room to stage a bundle)", min: 8 },
      append: { type: "string", multiple: true, value: "K=V", help: "added to the kernel command line in extlinux.conf" },
      ab: { type: "boolean", help: "two boot slots (/a, /b) and U-Boot's try-counting boot.scr with its boot state instead of extlinux.conf (docs/updates.md)" },
      version: { type: "string", value: "V", help: "the release version written into the boot manifests (1.2.0); what cohesix update compares", defaultNote: "none, read as 0.0.0" },
      dir: BUILD_OPTIONS.dir!,
      from: BUILD_OPTIONS.from!,
      offline: BUILD_OPTIONS.offline!,
    },
    examples: ["cohesix image --out cohesix.img", "cohesix image --board aarch64-virt --out card.img --data-mb 64", "cohesix image --ab --out card.img"],
    run: async (p, io) => (await import("./image.ts")).image(p, io),
    subverbs: [
      {
        name: "verify",
        summary: "check an image or an update bundle against its signature",
        description:
          "checks an image against its signed manifest (key, signature, image sha256, boot partition entries); a file that starts as a bundle (`cohesix bundle`) is checked as one instead (header signature, board with `--board`, size, every chunk and payload, the slot manifest inside) and its board, version and sizes are shown; exit 1 with what differs; `--json` prints the verified summary",
        args: [{ name: "FILE", help: "the disk image or update bundle" }],
        options: {
          pub: { type: "string", value: "FILE", help: "the release public key", defaultNote: "~/.config/cohesix/release.pub" },
          board: { type: "string", value: "BOARD", help: "for a bundle: refuse one built for another board" },
          manifest: { type: "string", value: "FILE", help: "the signed manifest", defaultNote: "FILE.manifest.json" },
          json: { type: "boolean", help: "the verified manifest's summary as JSON" },
        },
        examples: ["cohesix image verify cohesix.img", "cohesix image verify card.img --pub keys/release.pub", "cohesix image verify cohesix-1.2.0.bundle --board aarch64-virt"],
        run: async (p, io) => (await import("./image.ts")).verify(p, io),
      },
    ],
  },
  {
    name: "bundle",
    summary: "build a signed update bundle",
    description:
      "builds the board's slot exactly as `cohesix image` does (kernel and initramfs for a disk boot; in a project folder, or with `--project DIR`, with the project's workers and files) and writes it as one signed update bundle: a header (board, version, payload sizes and sha256, a sha256 per 1 MiB chunk) signed with the release key (default `~/.config/cohesix/release.key`), then the kernel, the initramfs and the slot's signed boot manifest. `cohesix update` streams it into an appliance's inactive slot; `cohesix image verify FILE` checks it. `--version` defaults to the project's package.json version, else cohesix's. The kernel command line is the image's (in its boot.scr), not the bundle's. Reproducible. See [docs/updates.md](docs/updates.md)",
    options: {
      out: { type: "string", value: "FILE", help: "the bundle file to write", required: true },
      version: { type: "string", value: "V", help: "the release version (dotted numbers, e.g. 1.2.0)", defaultNote: "the project's package.json version, else cohesix's" },
      board: { type: "string", value: "BOARD", help: "the board", defaultNote: "the project's, else aarch64-virt" },
      project: BUILD_OPTIONS.project!,
      key: { type: "string", value: "FILE", help: "the release private key that signs the bundle", defaultNote: "~/.config/cohesix/release.key, made on first use" },
      "queen-pub": BUILD_OPTIONS["queen-pub"]!,
      policy: BUILD_OPTIONS.policy!,
      extra: BUILD_OPTIONS.extra!,
      dir: BUILD_OPTIONS.dir!,
      from: BUILD_OPTIONS.from!,
      offline: BUILD_OPTIONS.offline!,
      json: { type: "boolean", help: "what was written, as JSON" },
    },
    examples: ["cohesix bundle --version 1.2.0 --out cohesix-1.2.0.bundle", "cohesix bundle --project my-appliance --out my-1.0.1.bundle"],
    run: async (p, io) => (await import("./bundle.ts")).bundle(p, io),
  },
  {
    name: "update",
    summary: "send an update bundle to an appliance, or show or roll back its slots",
    description:
      "streams a bundle (`cohesix bundle`) into the appliance's inactive slot through its queen-only `/update/` directory: `begin` (the appliance answers the offset it has verified, so an interrupted transfer resumes there), the bytes into `/update/data` chunk by chunk (a progress bar on a terminal), `commit` (the appliance checks the signature against its release key, the board, the version and every byte, writes the slot, then marks it `trying` with `--tries` boots, default the appliance's 3), then `reboot` unless `--no-reboot`. A dropped connection is dialled again with backoff and resumes from the verified offset. `--status` shows both slots' state and version and the transfer; `--rollback` cancels a pending try, or makes the other good slot the one that boots (and reboots into it unless `--no-reboot`). Commands are signed like `/queen/ctl` under `--policy signed-ctl`. See [docs/updates.md](docs/updates.md)",
    synopsis: "update FILE [OPTIONS] | update --status | update --rollback",
    args: [{ name: "FILE", help: "the bundle (made by cohesix bundle)", optional: true }],
    options: {
      ...REMOTE_OPTIONS,
      status: { type: "boolean", help: "show both slots (state, version), the running one and the transfer" },
      rollback: { type: "boolean", help: "cancel a pending try, or boot the other good slot next" },
      "no-reboot": { type: "boolean", help: "do not reboot the appliance after writing the slot (or rolling back)" },
      "allow-downgrade": { type: "boolean", help: "accept a bundle older than the running version" },
      tries: { type: "string", value: "N", help: "try boots of the new slot before U-Boot rolls back (1-9)", defaultNote: "the appliance's, 3" },
      json: { type: "boolean", help: "the outcome as one JSON object" },
    },
    examples: ["cohesix update cohesix-1.2.0.bundle", "cohesix update my-1.0.1.bundle --addr tls!10.0.0.7!5640 --tries 2", "cohesix update --status", "cohesix update --rollback"],
    run: async (p, io) => (await import("./update.ts")).update(p, io),
  },
  {
    name: "flash",
    summary: "write a signed image to an SD card or USB stick",
    description:
      "checks the image's signed manifest, then writes it to an SD card or USB stick: lists the disks, refuses internal, system, mounted (unless `--unmount`), read-only and implausibly sized ones, picks a disk alone only when it is the single candidate, asks unless `--yes`, writes with a progress bar, reads back and compares sha256, re-reads the partition table. `--list` shows the disks; `--target-file` writes a plain file. See [docs/flash.md](docs/flash.md)",
    synopsis: "flash FILE [OPTIONS] | flash --list",
    args: [{ name: "FILE", help: "the image (made by cohesix image)", optional: true }],
    options: {
      device: { type: "string", value: "DEV", help: "the disk to write, e.g. sdb" },
      yes: { type: "boolean", short: "y", help: "do not ask" },
      unmount: { type: "boolean", help: "unmount the disk's mounted partitions first" },
      "target-file": { type: "string", value: "PATH", help: "write a plain file instead of a disk" },
      pub: { type: "string", value: "FILE", help: "the release public key", defaultNote: "~/.config/cohesix/release.pub" },
      "max-size": { type: "string", value: "SIZE", help: "refuse disks larger than this, e.g. 512G", defaultNote: "256G" },
      list: { type: "boolean", help: "show the disks and whether each may be flashed" },
    },
    examples: ["cohesix flash --list", "cohesix flash cohesix.img --device sdb", "cohesix flash cohesix.img --target-file card.img --yes"],
    run: async (p, io) => (await import("./flash.ts")).flash(p, io),
  },
  {
    name: "console",
    summary: "the board's serial console",
    description: "the board's serial console (serialport): raw mode, Ctrl-] exits, `--log` appends; `--expect` exits 0 once TEXT arrives, 1 on timeout",
    options: {
      port: { type: "string", value: "DEV", help: "the serial device, e.g. /dev/ttyUSB0", required: true },
      baud: { type: "string", value: "RATE", help: "the line rate", default: "115200" },
      log: { type: "string", value: "FILE", help: "append what arrives to FILE" },
      expect: { type: "string", value: "TEXT", help: "exit 0 once TEXT arrives" },
      timeout: { type: "string", value: "S", help: "with --expect: give up after S seconds (exit 1)", defaultNote: "60" },
    },
    examples: ["cohesix console --port /dev/ttyUSB0", "cohesix console --port /dev/pts/3 --expect READY --timeout 120"],
    run: async (p, io) => (await import("./flash.ts")).consoleCommand(p, io),
  },
  {
    name: "gpu-bridge",
    summary: "serve this host's GPUs to appliances",
    description:
      "serves this machine's GPUs (NVML, or simulated ones) over 9P for an appliance to mount at `/gpu`; prints one `READY tcp!HOST!PORT` line once serving (`tls!…` with TLS) and serves until SIGTERM/SIGINT. Clients need a bridge ticket from `~/.config/cohesix/bridge.key`, made on first use. See [docs/gpu-bridge.md](docs/gpu-bridge.md)",
    options: {
      listen: { type: "string", value: "HOST:PORT", help: "where to serve (port 0 picks a free port)", required: true },
      backend: { type: "string", value: "BACKEND", help: "where the GPUs come from", choices: ["auto", "nvml", "sim"], default: "auto" },
      key: { type: "string", value: "FILE", help: "the bridge key", defaultNote: "~/.config/cohesix/bridge.key, made on first use" },
      "tls-key": { type: "string", value: "FILE", help: "serve TLS with this private key (with --tls-cert)" },
      "tls-cert": { type: "string", value: "FILE", help: "serve TLS with this certificate (with --tls-key)" },
      executor: { type: "string", value: "CMD", help: "the program that runs jobs" },
    },
    examples: ["cohesix gpu-bridge --listen 127.0.0.1:5650", "cohesix gpu-bridge --listen 127.0.0.1:5650 --backend sim"],
    run: async (p, io) => (await import("./gpu-bridge.ts")).gpuBridge(p, io),
  },
  {
    name: "dashboard",
    summary: "the operator web app",
    description:
      "serves the operator web app: the fleet list, each appliance's boot facts, lifecycle, memory, sessions, workers with live telemetry sparklines, GPU leases and the audit log, and actions (spawn, kill, cordon, drain, resume; pause, resume, snapshot, restore for a VM this folder runs) that go through `POST /api/ctl`, signed with the queen key on the server and audited. Holds a 9P session to each `--addr` (default: the appliances this folder runs) and reads the fleet from `--broker`. Prints `READY http://HOST:PORT/`, then a one-time login URL (port 0 picks a free port); serves until SIGTERM/SIGINT. Loopback only unless `--tls-key`, `--tls-cert` and `--token-file` are set. See [docs/dashboard.md](docs/dashboard.md)",
    options: {
      addr: { type: "string", multiple: true, value: "DIAL", help: "an appliance to show and drive (repeatable)", env: "COHESIX_ADDR", defaultNote: "without --broker: the VMs and host boards this folder runs" },
      broker: { type: "string", value: "URL", help: "the fleet's MQTT broker, e.g. mqtt://127.0.0.1:1883" },
      prefix: { type: "string", value: "PREFIX", help: "the fleet's topic prefix", default: "cohesix" },
      listen: { type: "string", value: "HOST:PORT", help: "where to serve (port 0 picks a free port)", default: "127.0.0.1:8080" },
      "tls-key": { type: "string", value: "FILE", help: "serve HTTPS with this private key (with --tls-cert)" },
      "tls-cert": { type: "string", value: "FILE", help: "serve HTTPS with this certificate (with --tls-key)" },
      "token-file": { type: "string", value: "FILE", help: "the login token (at least 32 characters) instead of a random one" },
      audit: { type: "string", value: "FILE", help: "also append each action's audit line to FILE" },
      limit: { type: "string", multiple: true, value: "NAME=N", help: "a dashboard limit from docs/security.md, e.g. max_streams=8 (repeatable)" },
      dir: { type: "string", value: "DIR", help: "the working folder whose VMs get the kill switch", defaultNote: ".cohesix" },
      key: REMOTE_OPTIONS.key!,
      dialect: REMOTE_OPTIONS.dialect!,
      pin: REMOTE_OPTIONS.pin!,
      timeout: REMOTE_OPTIONS.timeout!,
    },
    examples: ["cohesix dashboard", "cohesix dashboard --addr tcp!127.0.0.1!5640 --listen 127.0.0.1:0", "cohesix dashboard --broker mqtt://127.0.0.1:1883"],
    run: async (p, io) => (await import("./dashboard.ts")).dashboard(p, io),
  },
  {
    name: "ticket",
    summary: "print a signed ticket",
    description: "prints a signed ticket (for stock clients' `aname`); roles other than queen need `--subject`",
    options: {
      role: { type: "string", value: "ROLE", help: "the ticket's role, e.g. queen", required: true },
      subject: { type: "string", value: "NAME", help: "the ticket's subject; needed for roles other than queen", defaultNote: "queen for the queen" },
      key: REMOTE_OPTIONS.key!,
      ttl: { type: "string", value: "S", help: "lifetime in seconds", default: "3600", min: 1 },
      aud: { type: "string", value: "BOOT_KEY_ID", help: "the one appliance the ticket works on (boot_key= in its /proc/boot)" },
    },
    examples: ["cohesix ticket --role queen", "cohesix ticket --role worker --subject worker-1 --ttl 600"],
    run: async (p, io) => (await import("./local.ts")).ticket(p, io),
  },
  {
    name: "ls",
    summary: "list a directory of the appliance",
    description: "lists a directory (directories end in `/`); `--json` gives each entry's type, mode, length and time",
    args: [{ name: "PATH", help: "an absolute path", optional: true }],
    options: { long: { type: "boolean", short: "l", help: "mode, length, time and name" }, json: { type: "boolean", help: "an array of {name, type, mode, length, mtime}" }, ...REMOTE_OPTIONS },
    examples: ["cohesix ls /", "cohesix ls -l /proc"],
    run: async (p, io) => (await light(() => import("./remote.ts"))).ls(p, io),
  },
  {
    name: "cat",
    summary: "print files of the appliance",
    description: "prints files; `--json` reads a `key=value` file (`/proc/boot`, `/proc/workers`, `/proc/mem`, `/proc/sessions` …) or a JSON file as JSON",
    args: [{ name: "PATH", help: "absolute paths", variadic: true }],
    options: { json: { type: "boolean", help: "a key=value file (/proc/boot, /proc/workers …) or a JSON file as JSON; several paths give an object keyed by path" }, ...REMOTE_OPTIONS },
    examples: ["cohesix cat /proc/boot", "cohesix cat /log/queen.log", "cohesix cat --json /proc/workers"],
    run: async (p, io) => (await light(() => import("./remote.ts"))).cat(p, io),
  },
  {
    name: "tail",
    summary: "print the last lines of a file, or follow it",
    description: "prints the last lines; `-f` follows appends",
    args: [{ name: "PATH", help: "an absolute path" }],
    options: {
      follow: { type: "boolean", short: "f", help: "follow appends until interrupted" },
      lines: { type: "string", short: "n", value: "N", help: "how many lines", default: "10", min: 0 },
      interval: { type: "string", value: "MS", help: "with -f: how often to look for appends", default: "250", min: 1 },
      ...REMOTE_OPTIONS,
    },
    examples: ["cohesix tail -f /log/queen.log", "cohesix tail -n 1 /worker/worker-1/telemetry"],
    run: async (p, io) => (await light(() => import("./remote.ts"))).tail(p, io),
  },
  {
    name: "write",
    summary: "write text to a file of the appliance",
    description: "one write of TEXT; under `--policy signed-ctl` a command for a ctl file that changes state (`/queen/lifecycle/ctl`, `/worker/<id>/ctl`) is signed first",
    args: [
      { name: "PATH", help: "an absolute path" },
      { name: "TEXT", help: "written as is (no newline is added)" },
    ],
    options: REMOTE_OPTIONS,
    examples: ["cohesix write /worker/worker-1/ctl stop"],
    run: async (p, io) => (await light(() => import("./remote.ts"))).write(p, io),
  },
  {
    name: "stat",
    summary: "metadata of a file of the appliance",
    description: "`key=value` metadata, including the qid",
    args: [{ name: "PATH", help: "an absolute path" }],
    options: REMOTE_OPTIONS,
    examples: ["cohesix stat /queen/ctl"],
    run: async (p, io) => (await light(() => import("./remote.ts"))).stat(p, io),
  },
  {
    name: "ctl",
    summary: "send one command to /queen/ctl",
    description:
      "writes one command to `/queen/ctl` (or `--file PATH`), signed as a `signed-ctl` envelope with the queen key and the next counter, and prints the reply read back on the same fid (the worker id for a spawn; `--json` the whole reply)",
    args: [{ name: "JSON", help: "the command, e.g. {\"spawn\":\"heartbeat\",\"ticks\":3}" }],
    options: {
      unsigned: { type: "boolean", help: "send the command as is, not in a signed envelope" },
      json: { type: "boolean", help: "print the whole reply as JSON, not just the worker id" },
      file: { type: "string", value: "PATH", help: "a control file other than /queen/ctl", default: "/queen/ctl" },
      ...REMOTE_OPTIONS,
    },
    examples: [`cohesix ctl '{"spawn":"heartbeat","ticks":3}'`, `cohesix ctl '{"kill":"worker-1"}'`],
    run: async (p, io) => (await light(() => import("./remote.ts"))).ctl(p, io),
  },
  {
    name: "spawn",
    summary: "start a worker and print its id",
    description:
      "starts a worker through `/queen/ctl`, signed like `ctl`, and prints its id: `--ticks` at the top of the command, `--ttl` and `--ops` in its budget, `--lease` as a GPU lease (its ttl defaults to `--ttl`, else 120 s)",
    args: [{ name: "NAME", help: "the worker's name, e.g. heartbeat" }],
    options: {
      ticks: { type: "string", value: "N", help: "how many ticks the worker runs" },
      ttl: { type: "string", value: "S", help: "its budget's lifetime in seconds" },
      ops: { type: "string", value: "N", help: "its budget's operations" },
      lease: { type: "string", value: "LEASE", help: "a GPU lease: GPU_ID:mem=MiB[,streams=N][,ttl=S][,priority=N]" },
      restart: { type: "boolean", help: "restart it when it exits" },
      ...REMOTE_OPTIONS,
    },
    examples: ["cohesix spawn heartbeat --ticks 100 --ttl 120", "cohesix spawn gpu --lease GPU-0:mem=1024"],
    run: async (p, io) => (await light(() => import("./workers.ts"))).spawn(p, io),
  },
  {
    name: "kill",
    summary: "stop a worker",
    description: "stops a worker through `/queen/ctl` (`{\"kill\":\"worker-7\"}`, signed like `ctl`) and prints its id",
    args: [{ name: "WORKER", help: "worker-7, or 7" }],
    options: REMOTE_OPTIONS,
    examples: ["cohesix kill worker-7"],
    run: async (p, io) => (await light(() => import("./workers.ts"))).kill(p, io),
  },
  {
    name: "logs",
    summary: "a worker's stderr",
    description: "prints a worker's stderr, which the root task keeps in `/log/<id>.log` after it exits; `-f` follows appends until interrupted",
    args: [{ name: "WORKER", help: "worker-7, or 7" }],
    options: { follow: { type: "boolean", short: "f", help: "follow appends until interrupted" }, ...REMOTE_OPTIONS },
    examples: ["cohesix logs worker-3", "cohesix logs 3 -f"],
    run: async (p, io) => (await light(() => import("./workers.ts"))).logs(p, io),
  },
  {
    name: "sh",
    summary: "the queen shell, over one session",
    description:
      "an interactive shell over one 9P session: `ls cat tail write ctl spawn kill logs cd pwd help exit`, tab completion of paths from the namespace, history in `~/.config/cohesix/history`, a prompt with the appliance and its lifecycle. `-c 'CMD; CMD'` or commands on stdin (when it is not a terminal) run as a script: a failed command prints one line and the script goes on, then exits 1",
    options: {
      command: { type: "string", short: "c", value: "SCRIPT", help: "run these commands (separated by ; or new lines) and exit" },
      ...REMOTE_OPTIONS,
    },
    examples: ["cohesix sh", "cohesix sh -c 'spawn heartbeat --ticks 10; ls /worker'", "echo 'cat /proc/lifecycle/state' | cohesix sh"],
    run: async (p, io) => (await light(() => import("./shell.ts"))).sh(p, io),
  },
  {
    name: "status",
    summary: "the boards, VMs and host boards of this folder",
    description:
      "shows every board with a run folder or an image under `.cohesix/`: PID, address, lifecycle and running workers; a running one it cannot reach in `--timeout S` (default 2) shows as `unreachable`, with the reason below the table",
    options: {
      json: { type: "boolean", help: "print the status as JSON" },
      key: REMOTE_OPTIONS.key!,
      dialect: REMOTE_OPTIONS.dialect!,
      pin: REMOTE_OPTIONS.pin!,
      timeout: { ...REMOTE_OPTIONS.timeout!, defaultNote: "2" },
    },
    examples: ["cohesix status", "cohesix status --json"],
    run: async (p, io) => (await light(() => import("./status.ts"))).status(p, io),
  },
  {
    name: "fleet",
    summary: "the appliances on an MQTT broker: list, tail, command",
    description: "the host's side of the fleet link ([docs/fleet.md](docs/fleet.md)): what the appliances on a broker publish, and signed commands to them",
    subverbs: [
      {
        name: "ls",
        summary: "list the appliances on a broker",
        description:
          "lists every appliance with a retained birth or death record on the broker: id, live or dead (a death of the birth's session or later), version, lifecycle, last seen and the backlog its outbox still had to forward when it connected; `--json` as an array",
        options: {
          ...SELECT_OPTIONS,
          json: { type: "boolean", help: "print the appliances as JSON" },
          wait: { type: "string", value: "S", help: "wait at most S seconds for the retained records", default: "5" },
          ...BROKER_OPTIONS,
        },
        examples: ["cohesix fleet ls --broker mqtt://broker.lan:1883", "cohesix fleet ls --select board=aarch64-virt --json"],
        run: async (p, io) => (await import("./fleet.ts")).fleetLs(p, io),
      },
      {
        name: "tail",
        summary: "print the appliances' records as they arrive",
        description:
          "prints records as they arrive (births, deaths, lifecycle, telemetry, audit, dropped), duplicates removed by (id, seq), records made while the broker was away marked `[historical]`, retained ones `[retained]`; until interrupted or `--count N`; `--json` prints each record as one JSON line",
        options: {
          ...SELECT_OPTIONS,
          count: { type: "string", value: "N", help: "stop after N records", min: 1 },
          json: { type: "boolean", help: "each record as one JSON line" },
          ...BROKER_OPTIONS,
        },
        examples: ["cohesix fleet tail --id app-1", "cohesix fleet tail --select version=0.2.0 --json"],
        run: async (p, io) => (await import("./fleet.ts")).fleetTail(p, io),
      },
      {
        name: "ctl",
        summary: "send one signed command to many appliances",
        description:
          "sends one command to the chosen live appliances over the broker, each as a signed envelope naming the appliance, its next counter (from its birth) and a reply topic, signed with the queen key; at most `--rate N/s`, answers awaited until `--deadline S`; prints one line per appliance (`ok`, `refused` with the reason, `timed out`) and a summary, and exits 1 if any was not ok",
        args: [{ name: "JSON", help: "the command, e.g. {\"spawn\":\"heartbeat\",\"ticks\":3}" }],
        options: {
          all: { type: "boolean", help: "every live appliance" },
          ...SELECT_OPTIONS,
          rate: { type: "string", value: "N/s", help: "send at most N commands a second", defaultNote: "1000/s" },
          deadline: { type: "string", value: "S", help: "every appliance must answer within S seconds", default: "10" },
          key: { type: "string", value: "FILE", help: "the queen private key that signs the commands", env: "COHESIX_KEY", defaultNote: "~/.config/cohesix/queen.key" },
          json: { type: "boolean", help: "the results and the summary as JSON" },
          wait: { type: "string", value: "S", help: "wait at most S seconds for the retained births", default: "5" },
          ...BROKER_OPTIONS,
        },
        examples: [`cohesix fleet ctl --all '{"spawn":"heartbeat","ticks":3}'`, `cohesix fleet ctl --select board=rpi4 --rate 20/s --deadline 30 '{"kill":"worker-2"}'`],
        run: async (p, io) => (await import("./fleet-ctl.ts")).fleetCtl(p, io),
      },
    ],
  },
  {
    name: "log",
    summary: "check or show a state directory's commit log",
    description: "offline tools for a state directory's commit log",
    subverbs: [
      {
        name: "verify",
        summary: "check a commit log offline",
        description: "checks a state directory's commit log offline: checksums, hash chain, HMAC (with the directory's boot key); exits 1 on damage",
        args: [{ name: "DIR", help: "the state directory" }],
        options: { "boot-key": { type: "string", value: "FILE", help: "the boot key that keys the HMAC", defaultNote: "DIR/boot.key when present" } },
        examples: ["cohesix log verify .cohesix/state"],
        run: async (p, io) => (await import("./log.ts")).logVerify(p, io),
      },
      {
        name: "show",
        summary: "print a commit log's records",
        description: "prints the committed records, one per line, or with `--json` as an array",
        args: [{ name: "DIR", help: "the state directory" }],
        options: {
          "boot-key": { type: "string", value: "FILE", help: "the boot key that keys the HMAC", defaultNote: "DIR/boot.key when present" },
          from: { type: "string", value: "N", help: "records from sequence number N", min: 0 },
          limit: { type: "string", value: "N", help: "at most N records", min: 0 },
          kind: { type: "string", value: "KIND", help: "only records of this kind, e.g. spawn; kill and revoke: the exits of killed and revoked workers" },
          json: { type: "boolean", help: "an array of the records (seq, ts, kind, body, batch, hash, prev)" },
        },
        examples: ["cohesix log show .cohesix/state --kind spawn", "cohesix log show .cohesix/state --from 100 --limit 10"],
        run: async (p, io) => (await import("./log.ts")).logShow(p, io),
      },
    ],
  },
  {
    name: "completion",
    summary: "print a shell completion script",
    description: "prints a completion script for bash or zsh: `source <(cohesix completion bash)`",
    args: [{ name: "SHELL", help: "bash or zsh" }],
    examples: ["source <(cohesix completion bash)", "cohesix completion zsh > ~/.zfunc/_cohesix"],
    run: async (p, io) => {
      const shell = p.positionals[0];
      const { bashCompletion, zshCompletion } = await import("./completion.ts");
      if (shell === "bash") io.out(bashCompletion(VERBS));
      else if (shell === "zsh") io.out(zshCompletion(VERBS));
      else throw new UsageError(`SHELL must be bash or zsh, got ${JSON.stringify(shell)}`);
    },
  },
  {
    name: "help",
    summary: "a command's options and examples",
    description: "prints the usage, or a command's help: its arguments, options with their defaults, and examples",
    args: [{ name: "COMMAND", help: "a command, e.g. ls or image verify", optional: true, variadic: true }],
    options: { markdown: { type: "boolean", help: "print the README's command table instead" } },
    examples: ["cohesix help ls", "cohesix help image verify"],
    run: async (p, io) => (await import("./main.ts")).help(p, io),
  },
];
