/**
 * The harness of the A/B acceptance suite and the update benchmark: real
 * image bytes under Debian's U-Boot, no mocks. It builds an A/B disk image
 * with `cohesix image --ab --version V`, flashes it to a plain file with
 * `cohesix flash --target-file`, builds update bundles with `cohesix
 * bundle`, and boots the flashed file in QEMU with U-Boot as `-bios` and
 * without `-no-reboot`, so a panic, a failed try or `/update/ctl`'s reboot
 * goes back through U-Boot inside the same QEMU process and the same host
 * forward. It reads the console (`waitConsole` from a mark, so each step
 * sees only what came after it), the boot state straight from the image
 * with mtools, `/proc/boot` and `/update/status` over 9P, and it stops QEMU
 * by PID: SIGKILL for a power cut, SIGTERM at the end.
 *
 * @example
 * ```ts
 * const e2e = await E2e.create("cohesix-ab-");
 * const vm = await AbVm.flash(e2e, await AbVm.buildImage(e2e, { version: "1.0.0" }), "card.img");
 * await vm.boot("v1");
 * await vm.waitConsole(/READY/);
 * (await vm.bootState())?.active; // "a"
 * await vm.stop();
 * ```
 */
import { execa, type ResultPromise } from "execa";
import { createHash } from "node:crypto";
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { loadBoard } from "../../boards/index.ts";
import { loadDiskSpec, type ImageManifest } from "../../flash/index.ts";
import { NineClient, type Fid } from "../../nine-door/index.ts";
import { qemuArgs } from "../../qemu/index.ts";
import { mintTicket, readPrivateKey } from "../../root-task/index.ts";
import { BUNDLE_PREFIX_BYTES, bundleHeaderLength, chooseBootState, parseBundleHeader, payloadRanges, writeBundle, type BootState } from "../../update/index.ts";
import { alive, freePort, type E2e } from "../qemu/harness.ts";

/** Building an image or a bundle on the loaded 2-core machine. */
export const BUILD_MS = 600_000;
/** One U-Boot boot to READY: 7–10 s idle, several times that on a loaded machine. */
export const BOOT_MS = 240_000;

const MTOOLS = { MTOOLS_SKIP_CHECK: "1" };
const board = loadBoard("aarch64-virt");
const disk = loadDiskSpec(board);

/** `key=value` lines as a record (the first `=` splits; a line without one is kept whole as a key). */
export function keyValues(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (!line) continue;
    const at = line.indexOf("=");
    if (at < 0) out[line] = "";
    else out[line.slice(0, at)] = line.slice(at + 1);
  }
  return out;
}

/** sha256 of a file's bytes, hex. */
export async function sha256Of(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}

/** What `AbVm.buildImage` builds: a versioned A/B image. */
export interface FlashOptions {
  /** The release version of the image's build (both slots). */
  readonly version: string;
  /** Words added to the kernel command line (in boot.scr, so every slot gets them). */
  readonly append?: readonly string[];
  /** An appliance project folder to build from (`--project`). */
  readonly project?: string;
  /** Extra files for the image, `SRC:DEST` (`--extra`). */
  readonly extra?: readonly string[];
  /** The data partition's size in MiB (`--data-mb`); default {@link AB_DATA_MB}. */
  readonly dataMb?: number;
}

/**
 * The data partition of the harness's images, MiB: the state disk stages a
 * whole bundle (a slot, ~80 MB for this board) beside the commit log and
 * the 16 MiB `update.reserve_bytes`, which the board's default (64 MiB,
 * disk.json `dataMb`) does not hold.
 */
export const AB_DATA_MB = 256;

/** One A/B appliance: a flashed disk image and the QEMU that boots it. */
export class AbVm {
  readonly e2e: E2e;
  /** The flashed target file QEMU boots (the card). */
  readonly card: string;
  /** Byte offset of the FAT boot partition in the card. */
  readonly bootOffset: number;
  /** The release private and public keys (`e2e.keys/release.{key,pub}`). */
  readonly releaseKey: string;
  readonly releasePub: string;
  /** The host port of the second forward of the last {@link boot} (its `forward`), else 0. */
  forwardPort = 0;
  #qemu: ResultPromise | undefined;
  #log = "";
  #boots = 0;

  private constructor(e2e: E2e, card: string, bootOffset: number) {
    this.e2e = e2e;
    this.card = card;
    this.bootOffset = bootOffset;
    this.releaseKey = join(e2e.keys, "release.key");
    this.releasePub = join(e2e.keys, "release.pub");
  }

  /**
   * Makes the release key pair (`e2e.keys/release.{key,pub}`) and builds
   * the A/B image of `version` (`cohesix image --ab --version`); returns
   * the image's path (its signed manifest beside it).
   */
  static async buildImage(e2e: E2e, o: FlashOptions): Promise<string> {
    if (!(await stat(disk.firmware!.path).catch(() => undefined))) throw new Error(`no U-Boot at ${disk.firmware!.path}: install ${disk.firmware!.package}`);
    const release = await e2e.cohesix(["keygen", "--release", "--out", e2e.keys]);
    if (release.exitCode !== 0) throw new Error(`cohesix keygen --release: ${release.stderr}`);
    const image = join(e2e.dir, `v${o.version}.img`);
    const args = ["image", "--ab", "--version", o.version, "--board", "aarch64-virt", "--out", image, "--key", join(e2e.keys, "release.key"), "--queen-pub", e2e.queenPub, "--dir", join(e2e.dir, ".cohesix")];
    for (const word of o.append ?? []) args.push("--append", word);
    for (const file of o.extra ?? []) args.push("--extra", file);
    args.push("--data-mb", String(o.dataMb ?? AB_DATA_MB));
    if (o.project) args.push("--project", o.project);
    const built = await e2e.cohesix(args, { timeoutMs: BUILD_MS });
    if (built.exitCode !== 0) throw new Error(`cohesix ${args.join(" ")}: ${built.stderr}`);
    return image;
  }

  /**
   * Checks and flashes `image` to the card file `DIR/<card>` (`cohesix
   * flash --target-file --yes --pub release.pub`), as onto a board's card.
   */
  static async flash(e2e: E2e, image: string, card: string): Promise<AbVm> {
    const target = join(e2e.dir, card);
    const flashed = await e2e.cohesix(["flash", image, "--target-file", target, "--yes", "--pub", join(e2e.keys, "release.pub")], { timeoutMs: 300_000 });
    if (flashed.exitCode !== 0) throw new Error(`cohesix flash: ${flashed.stdout}\n${flashed.stderr}`);
    const manifest = JSON.parse(await readFile(`${image}.manifest.json`, "utf8")) as ImageManifest;
    return new AbVm(e2e, target, manifest.partitions.find((p) => p.role === "boot")!.start);
  }

  /** Builds an update bundle of `version` (`cohesix bundle`, signed with `e2e.keys/release.key`), optionally from a project; returns its path. */
  static async bundle(e2e: E2e, version: string, o: { project?: string; name?: string } = {}): Promise<string> {
    const out = join(e2e.dir, `${o.name ?? `v${version}`}.bundle`);
    const args = ["bundle", "--version", version, "--board", "aarch64-virt", "--out", out, "--key", join(e2e.keys, "release.key"), "--queen-pub", e2e.queenPub, "--dir", join(e2e.dir, ".cohesix")];
    if (o.project) args.push("--project", o.project);
    const r = await e2e.cohesix(args, { timeoutMs: BUILD_MS });
    if (r.exitCode !== 0) throw new Error(`cohesix ${args.join(" ")}: ${r.stderr}`);
    return out;
  }

  /** The console log of the current QEMU ("" before one started). */
  console(): Promise<string> {
    return this.#log ? readFile(this.#log, "latin1").catch(() => "") : Promise.resolve("");
  }

  /** Where the console is now: pass it to {@link waitConsole} to see only what comes after. */
  async mark(): Promise<number> {
    return (await this.console()).length;
  }

  /** The QEMU process's PID, while one runs. */
  get pid(): number | undefined {
    const pid = this.#qemu?.pid;
    return pid !== undefined && alive(pid) && this.#qemu!.exitCode == null ? pid : undefined;
  }

  /**
   * Starts QEMU on the card (one process across guest reboots) with a new
   * host forward; `e2e.dial` points at it. Nothing is awaited: use
   * {@link waitConsole}. `forward` adds a second host forward on the same
   * user network to that guest port ({@link forwardPort} on the host).
   */
  async boot(name: string, o: { forward?: number } = {}): Promise<void> {
    if (this.pid !== undefined) throw new Error(`boot ${name}: QEMU ${this.pid} still runs`);
    this.#log = join(this.e2e.dir, `${++this.#boots}-${name}.console.log`);
    await rm(this.#log, { force: true });
    const hostPort = await freePort();
    this.e2e.dial = `tcp!127.0.0.1!${hostPort}`;
    // `ab` (the launcher's A/B disk boot: no -no-reboot, a watchdog device);
    // -no-reboot is filtered too, so a guest reboot goes back through U-Boot.
    const diskBoot = { firmware: disk.firmware!.path, image: this.card, ab: true, ...(disk.qemuDevice ? { device: disk.qemuDevice } : {}), ...(disk.qemuMachineOptions ? { machineOptions: disk.qemuMachineOptions } : {}) };
    let args = qemuArgs({ board, disk: diskBoot, hostPort, qmpSocket: join(this.e2e.dir, `${this.#boots}.qmp`), consoleLog: this.#log }).filter((a) => a !== "-no-reboot");
    if (o.forward !== undefined) {
      this.forwardPort = await freePort();
      const rule = `,hostfwd=tcp:127.0.0.1:${this.forwardPort}-:${o.forward}`;
      args = args.map((a) => (a.startsWith("user,id=n0,") ? `${a}${rule}` : a));
    }
    this.#qemu = execa(board.qemu.binary, args, { stdin: "ignore", reject: false, cleanup: true });
  }

  /**
   * Waits until the console after `since` matches `re` (polling the log,
   * no fixed sleep); returns the text after `since`. Throws with the
   * console's tail when QEMU ends first or the time runs out.
   */
  async waitConsole(re: RegExp, o: { since?: number; timeoutMs?: number } = {}): Promise<string> {
    const deadline = Date.now() + (o.timeoutMs ?? BOOT_MS);
    let text = "";
    while (Date.now() < deadline) {
      text = (await this.console()).slice(o.since ?? 0);
      if (re.test(text)) return text;
      if (this.pid === undefined) break;
      await sleep(250);
    }
    throw new Error(`${re} not seen on the console${this.pid === undefined ? " (QEMU ended)" : ""}\n--- console (last lines) ---\n${text.slice(-4000)}`);
  }

  /** A power cut: SIGKILL to QEMU by PID, and its exit awaited. */
  async kill9(): Promise<void> {
    const pid = this.pid;
    if (pid === undefined) return;
    process.kill(pid, "SIGKILL");
    await this.#qemu!.catch(() => {});
  }

  /** Stops QEMU by PID: SIGTERM, then SIGKILL if it outlives 10 s. */
  async stop(): Promise<void> {
    const pid = this.pid;
    if (pid === undefined) return;
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
    if (alive(pid)) process.kill(pid, "SIGKILL");
    await this.#qemu!.catch(() => {});
  }

  /** A file of the boot partition, read from the card with mtools (`path` like `/state.env`). */
  async bootFile(path: string): Promise<Buffer> {
    const r = await execa("mcopy", ["-n", "-i", `${this.card}@@${this.bootOffset}`, `::${path}`, "-"], { env: MTOOLS, encoding: "buffer" });
    return Buffer.from(r.stdout);
  }

  /** The boot state as U-Boot will read it next (state.env when whole, else state.bak). */
  async bootState(): Promise<BootState | null> {
    return chooseBootState(await this.bootFile("/state.env"), await this.bootFile("/state.bak")).state;
  }

  /** sha256 of every file of slot `slot`'s folder, by name. */
  async slotDigests(slot: "a" | "b"): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const name of ["Image", "initrd.gz", "manifest.json"]) out[name] = createHash("sha256").update(await this.bootFile(`/${slot}/${name}`)).digest("hex");
    return out;
  }

  /** A queen session over 9P to the guest (retried: the forward accepts before the guest serves). */
  async attachQueen(tries = 60): Promise<Fid> {
    const key = await readPrivateKey(this.e2e.queenKey);
    let last: unknown;
    for (let i = 0; i < tries; i++) {
      try {
        const client = await NineClient.dial(this.e2e.dial, { dialect: "9P2000" });
        try {
          return await client.attach({ uname: "queen", aname: mintTicket({ role: "queen", sub: "queen" }, key, { ttlS: 3600 }) });
        } catch (err) {
          client.close();
          throw err;
        }
      } catch (err) {
        last = err;
        await sleep(500);
      }
    }
    throw new Error(`attach to ${this.e2e.dial} as queen: ${(last as Error)?.message}`);
  }

  /** One file of the guest's namespace, read as text by a fresh queen session. */
  async read(path: string): Promise<string> {
    const root = await this.attachQueen();
    try {
      return await root.readText(path.replace(/^\//, ""));
    } finally {
      root.client.close();
    }
  }

  /** Waits until `/proc/boot` says the running slot is confirmed (`slot_state=good`); returns it. */
  async confirmed(timeoutMs = BOOT_MS): Promise<Record<string, string>> {
    const deadline = Date.now() + timeoutMs;
    let boot: Record<string, string> = {};
    while (Date.now() < deadline) {
      boot = await this.procBoot();
      if (boot.slot_state === "good") return boot;
      await sleep(1000);
    }
    throw new Error(`the running slot was not confirmed: ${JSON.stringify(boot)}\n${(await this.console()).slice(-3000)}`);
  }

  /** `/proc/boot` once the boot-time manifest check is done, as key=value. */
  async procBoot(): Promise<Record<string, string>> {
    let text = await this.read("/proc/boot");
    for (let i = 0; i < 120 && /manifest_check=pending/.test(text); i++) {
      await sleep(1000);
      text = await this.read("/proc/boot");
    }
    return keyValues(text);
  }

  /** `/update/status` as key=value. */
  async updateStatus(): Promise<Record<string, string>> {
    return keyValues(await this.read("/update/status"));
  }

  /** One `/update/ctl` command (JSON) on a fresh session; the reply, or `Error: <class>: …`. */
  async updateCtl(command: unknown): Promise<string> {
    const root = await this.attachQueen();
    try {
      const ctl = await root.walk("update/ctl");
      await ctl.open("rw");
      try {
        await ctl.write(JSON.stringify(command));
        return (await ctl.readAll(0)).toString("utf8").trim();
      } catch (err) {
        return `Error: ${(err as Error).message}`;
      }
    } finally {
      root.client.close();
    }
  }

  /** `cohesix update ARGS` against the guest as the queen (not awaited: the caller may cut the power under it). */
  update(args: readonly string[], timeoutMs = 600_000) {
    return this.e2e.cohesix(["update", ...args, "--addr", this.e2e.dial, "--key", this.e2e.queenKey], { timeoutMs });
  }
}

/**
 * A bundle made from another bundle's kernel and initramfs, re-signed:
 * another `version`, `board` or signing `key` (a private key file), or the
 * initramfs cut to `truncateInitrd` bytes (a valid signature over a build
 * whose kernel panics). Returns the new bundle's path.
 */
export async function deriveBundle(from: string, out: string, o: { key: string; version: string; board?: string; truncateInitrd?: number }): Promise<string> {
  const bytes = await readFile(from);
  const { header } = parseBundleHeader(bytes.subarray(0, bundleHeaderLength(bytes.subarray(0, BUNDLE_PREFIX_BYTES))));
  const ranges = payloadRanges(header);
  const part = (name: string): Buffer => {
    const r = ranges.find((x) => x.name === name)!;
    return bytes.subarray(r.start, r.end);
  };
  const kernel = `${out}.Image`;
  const initramfs = `${out}.initrd.gz`;
  await writeFile(kernel, part("Image"));
  const initrd = part("initrd.gz");
  await writeFile(initramfs, o.truncateInitrd === undefined ? initrd : initrd.subarray(0, o.truncateInitrd));
  await writeBundle({ board: o.board ?? header.board, version: o.version, kernel, initramfs, key: await readPrivateKey(o.key), out });
  await rm(kernel, { force: true });
  await rm(initramfs, { force: true });
  return out;
}

/** A copy of a bundle with one byte flipped at `offset` (of the file). */
export async function flipByte(from: string, out: string, offset: number): Promise<string> {
  const bytes = Buffer.from(await readFile(from));
  bytes[offset] = bytes[offset]! ^ 0xff;
  await writeFile(out, bytes);
  return out;
}

/** Where a bundle's payload area starts (the first byte after its header). */
export async function payloadStart(path: string): Promise<number> {
  const bytes = await readFile(path);
  return bundleHeaderLength(bytes.subarray(0, BUNDLE_PREFIX_BYTES));
}
