/**
 * `cohesix boot|up --gpu-bridge DIAL`: hands a QEMU guest what it needs to
 * mount the host's GPU bridge at /gpu. The bridge accepts only a bridge
 * ticket (or pinned TLS), and the bridge key must not enter the guest, so
 * the CLI mints a ticket here with the key (by default the one `cohesix
 * gpu-bridge` made in the config folder, so the two pair with no flags)
 * and passes it, with the dial string, as a QEMU firmware config item
 * (see root-task/guest-bridge.ts): not on the kernel command line, which
 * any local user reads in QEMU's argv, and not in the image, whose digest
 * must not change per boot. The file QEMU reads is 0600 in the VM's run
 * folder and removed once QEMU has started.
 * @module
 */
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { mintBridgeTicket } from "../gpu-bridge/index.ts";
import { formatDialString, parseDialString, type DialAddress } from "../nine-door/index.ts";
import { FW_CFG_GPU_BRIDGE, formatGuestBridge, readPrivateKey } from "../root-task/index.ts";
import { str, UsageError, type Parsed } from "./args.ts";
import { defaultBridgeKey } from "./gpu-bridge.ts";

/** The options `boot` and `up` take for the bridge (declared in options.ts). */
export { GPU_BRIDGE_OPTIONS } from "./options.ts";

/** Default lifetime of the ticket a guest gets: a day. */
export const GUEST_BRIDGE_TTL_S = 86_400;

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1)$/;

/**
 * The bridge's address as the guest must dial it: a loopback host means
 * this machine, which QEMU user networking shows the guest as its gateway
 * (10.0.2.2); other hosts pass unchanged. A Unix socket cannot be reached
 * from a VM.
 *
 * @example
 * ```ts
 * guestDial("127.0.0.1:5650", "10.0.2.2"); // { dial: "tcp!10.0.2.2!5650", rewritten: true }
 * guestDial("tcp!10.0.2.2!5650", "10.0.2.2"); // { dial: "tcp!10.0.2.2!5650", rewritten: false }
 * ```
 */
export function guestDial(dial: string, gateway: string): { dial: string; rewritten: boolean } {
  let addr: DialAddress;
  try {
    addr = parseDialString(dial);
  } catch (err) {
    throw new UsageError(`--gpu-bridge ${(err as Error).message.replace(/^invalid: /, "")}`);
  }
  if (addr.kind === "unix") throw new UsageError(`--gpu-bridge ${dial}: a guest cannot reach a Unix socket on the host; run the bridge on TCP (cohesix gpu-bridge --listen 127.0.0.1:PORT)`);
  if (LOOPBACK.test(addr.host)) return { dial: formatDialString({ ...addr, host: gateway }), rewritten: true };
  return { dial: formatDialString(addr), rewritten: false };
}

/** Options of {@link prepareGuestBridge}. */
export interface GuestBridgeSetup {
  /** Parsed `boot`/`up` options. */
  readonly parsed: Parsed;
  /** The board's gateway as the guest sees the host, e.g. `10.0.2.2`. */
  readonly gateway: string;
  /** The board's kernel modules: without `qemu_fw_cfg` the guest sees the item only if its kernel has the driver built in. */
  readonly modules?: readonly string[];
  /** The VM's run folder: the item's file goes there. */
  readonly runDir: string;
  readonly env: NodeJS.ProcessEnv;
  readonly err: (text: string) => void;
}

/**
 * When `--gpu-bridge` was given: mints the guest's bridge ticket, writes
 * the firmware config item, and returns it for QEMU with a `remove()` to
 * call once QEMU has started. Undefined without `--gpu-bridge`.
 *
 * @example
 * ```ts
 * const item = await prepareGuestBridge({ parsed, gateway: "10.0.2.2", runDir, env, err });
 * try { await bootVm({ …, ...(item ? { fwCfg: [item.fwCfg] } : {}) }); } finally { await item?.remove(); }
 * ```
 */
export async function prepareGuestBridge(setup: GuestBridgeSetup): Promise<{ fwCfg: { name: string; file: string }; dial: string; remove(): Promise<void> } | undefined> {
  const p = setup.parsed;
  const given = str(p, "gpu-bridge");
  const keyPath = str(p, "gpu-bridge-key");
  const pin = str(p, "gpu-bridge-pin");
  const ttlText = str(p, "gpu-bridge-ttl");
  if (given === undefined) {
    if (keyPath !== undefined || pin !== undefined || ttlText !== undefined) throw new UsageError("--gpu-bridge-key, --gpu-bridge-pin and --gpu-bridge-ttl go with --gpu-bridge DIAL");
    return undefined;
  }
  const ttlS = ttlText === undefined ? GUEST_BRIDGE_TTL_S : Number(ttlText);
  if (!Number.isSafeInteger(ttlS) || ttlS <= 0) throw new UsageError("--gpu-bridge-ttl must be a whole number of seconds above 0");
  const { dial, rewritten } = guestDial(given, setup.gateway);
  if (rewritten) setup.err(`boot: gpu bridge ${given} is on this host: the guest dials it as ${dial}\n`);
  if (setup.modules && !setup.modules.some((m) => m.replaceAll("-", "_") === "qemu_fw_cfg")) {
    setup.err("boot: warning: the board loads no qemu_fw_cfg module; the guest finds the gpu bridge only if its kernel has CONFIG_FW_CFG_SYSFS built in\n");
  }
  const key = keyPath ?? defaultBridgeKey(setup.env);
  if (!existsSync(key)) {
    throw new UsageError(`--gpu-bridge: bridge key ${key} does not exist: start \`cohesix gpu-bridge\` once on this host to make it, or pass --gpu-bridge-key FILE`);
  }
  const ticket = mintBridgeTicket(await readPrivateKey(key), { subject: "appliance", ttlS });
  await mkdir(setup.runDir, { recursive: true });
  const file = join(setup.runDir, "gpu-bridge.json");
  await rm(file, { force: true }); // a leftover must not keep looser permissions
  await writeFile(file, formatGuestBridge({ dial, ticket, ...(pin !== undefined ? { pin } : {}) }), { mode: 0o600 });
  return { fwCfg: { name: FW_CFG_GPU_BRIDGE, file }, dial, remove: () => rm(file, { force: true }) };
}
