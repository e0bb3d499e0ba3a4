/**
 * How a QEMU guest learns where the host's GPU bridge is and how to attach
 * to it. `cohesix boot --gpu-bridge DIAL` mints a bridge ticket on the host
 * (with the bridge key, which never enters the guest) and hands QEMU a small
 * JSON file as the firmware config item {@link FW_CFG_GPU_BRIDGE}; the
 * guest kernel's `qemu_fw_cfg` module shows it under
 * `/sys/firmware/qemu_fw_cfg/by_name/`. The ticket is kept out of the kernel
 * command line (QEMU's argv, which every local user can read with `ps`, and
 * the guest's `/proc/cmdline`) and out of the image (its digest stays the
 * same). The guest reads the item again at every connection to the bridge,
 * so a snapshot restored by a later `cohesix boot --restore … --gpu-bridge …`
 * attaches with that boot's fresh ticket.
 *
 * The item's format, one JSON object, written and read only here:
 *
 * ```json
 * {"dial":"tcp!10.0.2.2!5650","ticket":"<bridge ticket>","pin":"<sha256, TLS only>"}
 * ```
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidError, normalizeFingerprint, parseDialString } from "../nine-door/index.ts";
import type { GpuBridgeFiles } from "./serve.ts";
import { MAX_TICKET_LENGTH } from "./ticket.ts";

/**
 * The firmware config name of the bridge item (`-fw_cfg name=…,file=…`).
 *
 * @example
 * ```ts
 * qemuArgs.push("-fw_cfg", `name=${FW_CFG_GPU_BRIDGE},file=/run/gpu-bridge.json`);
 * ```
 */
export const FW_CFG_GPU_BRIDGE = "opt/cohesix/gpu-bridge";

/** Where the guest kernel shows firmware config items by name. */
export const FW_CFG_BY_NAME = "/sys/firmware/qemu_fw_cfg/by_name";

/**
 * What the guest needs to mount the host's bridge.
 *
 * @example
 * ```ts
 * const item: GuestBridge = { dial: "tcp!10.0.2.2!5650", ticket: mintBridgeTicket(key, { ttlS: 86_400 }) };
 * ```
 */
export interface GuestBridge {
  /** The bridge as the guest dials it: from QEMU user networking the host is 10.0.2.2. */
  readonly dial: string;
  /** A bridge ticket (role `bridge`), minted on the host. */
  readonly ticket: string;
  /** SHA-256 fingerprint of the bridge's TLS certificate, when it serves TLS. */
  readonly pin?: string;
}

/**
 * The item's bytes.
 *
 * @example
 * ```ts
 * await writeFile(file, formatGuestBridge({ dial: "tcp!10.0.2.2!5650", ticket }), { mode: 0o600 });
 * ```
 */
export function formatGuestBridge(bridge: GuestBridge): string {
  parseGuestBridge(JSON.stringify(bridge));
  return `${JSON.stringify({ dial: bridge.dial, ticket: bridge.ticket, ...(bridge.pin !== undefined ? { pin: bridge.pin } : {}) })}\n`;
}

/**
 * Reads and checks the item. Refusals are `InvalidError`s naming the field.
 *
 * @example
 * ```ts
 * parseGuestBridge('{"dial":"tcp!10.0.2.2!5650","ticket":"…"}').dial; // "tcp!10.0.2.2!5650"
 * parseGuestBridge("{}"); // invalid: gpu bridge item: dial must be a dial string …
 * ```
 */
export function parseGuestBridge(text: string): GuestBridge {
  const fail = (detail: string): never => {
    throw new InvalidError(`gpu bridge item: ${detail}`);
  };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return fail(`not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return fail("must be a JSON object");
  const v = value as Record<string, unknown>;
  for (const key of Object.keys(v)) if (!["dial", "ticket", "pin"].includes(key)) fail(`unknown field ${JSON.stringify(key).slice(0, 40)}`);
  if (typeof v.dial !== "string") return fail("dial must be a dial string such as tcp!10.0.2.2!5650");
  try {
    parseDialString(v.dial);
  } catch (err) {
    fail(`dial ${JSON.stringify(v.dial)}: ${(err as Error).message}`);
  }
  if (typeof v.ticket !== "string" || v.ticket.length === 0 || v.ticket.length >= MAX_TICKET_LENGTH || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(v.ticket)) {
    fail(`ticket must be a bridge ticket (base64url payload.signature, under ${MAX_TICKET_LENGTH} chars)`);
  }
  if (v.pin !== undefined) {
    if (typeof v.pin !== "string") fail("pin must be a SHA-256 fingerprint");
    try {
      normalizeFingerprint(v.pin as string);
    } catch (err) {
      fail(`pin: ${(err as Error).message}`);
    }
  }
  return { dial: v.dial, ticket: v.ticket as string, ...(typeof v.pin === "string" ? { pin: v.pin } : {}) };
}

/**
 * The bridge to mount, when the VM was booted with one: the item under
 * `fwCfgDir`, read now for the dial string and again at every connection
 * for the ticket. Undefined when there is no item (booted without
 * `--gpu-bridge`).
 *
 * @example
 * ```ts
 * const gpuBridge = guestGpuBridge();
 * await serveAppliance({ ...options, ...(gpuBridge ? { gpuBridge } : {}) });
 * ```
 */
export function guestGpuBridge(options: { fwCfgDir?: string } = {}): GpuBridgeFiles | undefined {
  const file = join(options.fwCfgDir ?? FW_CFG_BY_NAME, ...FW_CFG_GPU_BRIDGE.split("/"), "raw");
  if (!existsSync(file)) return undefined;
  const read = (): GuestBridge => parseGuestBridge(readFileSync(file, "utf8").replace(/\0+$/, ""));
  const first = read();
  return { dial: first.dial, ticket: () => read().ticket, ...(first.pin !== undefined ? { pin: first.pin } : {}) };
}
