/**
 * Whether NineDoor serves TLS or plain TCP: the `auto|on|off` setting
 * (`cohesix serve --tls`, the guest config's `tls`, the kernel command line's
 * `cohesix.tls=`) and the one rule `auto` follows (DESIGN §12):
 *
 * - a `tls!` listen address is TLS; a `unix!` one is never;
 * - otherwise `auto` is TLS unless the address is loopback (127.0.0.0/8,
 *   `::1`, `localhost`) or the appliance runs under QEMU with user
 *   networking, where the guest is reachable only through the host's
 *   forward on 127.0.0.1 (the guest sees QEMU's firmware config device);
 * - `on` and `off` say it outright.
 *
 * A real board on a network (a flashed image on hardware) therefore serves
 * TLS unless told `off`.
 *
 * @module
 */
import { isIP } from "node:net";
import { InvalidError, parseListenAddress, type DialAddress } from "../nine-door/index.ts";

/**
 * The TLS setting: `auto` follows {@link chooseTls}'s rule.
 *
 * @example
 * ```ts
 * const setting: TlsSetting = parseTlsSetting(process.env.COHESIX_TLS ?? "auto");
 * ```
 */
export type TlsSetting = "auto" | "on" | "off";

/**
 * The accepted values of {@link TlsSetting}.
 *
 * @example
 * ```ts
 * TLS_SETTINGS.includes("auto"); // true
 * ```
 */
export const TLS_SETTINGS: readonly TlsSetting[] = ["auto", "on", "off"];

/**
 * What {@link chooseTls} decided, and why, in the words `/proc/boot` shows.
 *
 * @example
 * ```ts
 * const choice: TlsChoice = { tls: false, reason: "loopback" };
 * ```
 */
export interface TlsChoice {
  readonly tls: boolean;
  readonly reason: string;
}

/**
 * Parses a setting's text.
 *
 * @throws {InvalidError} anything but `auto`, `on` or `off`, naming `source`.
 *
 * @example
 * ```ts
 * parseTlsSetting("on"); // "on"
 * parseTlsSetting("yes", { source: "cohesix.tls" }); // throws invalid: cohesix.tls: …
 * ```
 */
export function parseTlsSetting(text: string, options: { source?: string } = {}): TlsSetting {
  if ((TLS_SETTINGS as readonly string[]).includes(text)) return text as TlsSetting;
  throw new InvalidError(`${options.source ?? "tls setting"}: ${JSON.stringify(text)} is not one of auto, on, off`);
}

/**
 * Whether a listen host is loopback: 127.0.0.0/8, `::1`, `localhost`, or an
 * IPv4-mapped loopback address.
 *
 * @example
 * ```ts
 * isLoopbackHost("127.0.0.1"); // true
 * isLoopbackHost("0.0.0.0"); // false
 * ```
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === "localhost" || h === "::1") return true;
  const v4 = h.startsWith("::ffff:") ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith("127.");
}

/**
 * Decides TLS or plain TCP for a listen address under a setting.
 *
 * @throws {InvalidError} `on` for a `unix!` address, `off` for a `tls!` address.
 *
 * @example
 * ```ts
 * chooseTls("auto", { listen: "127.0.0.1:5640" }); // { tls: false, reason: "loopback" }
 * chooseTls("auto", { listen: "0.0.0.0:5640" }); // { tls: true, reason: "not loopback" }
 * chooseTls("auto", { listen: "0.0.0.0:5640", qemuUserNet: true }); // { tls: false, reason: "qemu user networking" }
 * ```
 */
export function chooseTls(setting: TlsSetting, options: { listen: DialAddress | string; qemuUserNet?: boolean }): TlsChoice {
  const address = typeof options.listen === "string" ? parseListenAddress(options.listen) : options.listen;
  if (address.kind === "unix") {
    if (setting === "on") throw new InvalidError(`tls on: a unix! address cannot serve TLS; listen on tcp!HOST!PORT`);
    return { tls: false, reason: "unix socket" };
  }
  if (address.kind === "tls") {
    if (setting === "off") throw new InvalidError(`tls off: the listen address tls!${address.host}!${address.port} asks for TLS; use tcp!… or drop --tls off`);
    return { tls: true, reason: "tls! address" };
  }
  if (setting === "on") return { tls: true, reason: "setting on" };
  if (setting === "off") return { tls: false, reason: "setting off" };
  if (isLoopbackHost(address.host)) return { tls: false, reason: "loopback" };
  if (options.qemuUserNet === true) return { tls: false, reason: "qemu user networking" };
  return { tls: true, reason: "not loopback" };
}
