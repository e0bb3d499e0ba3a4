/**
 * `cohesix boot|up --fleet URL [--fleet-id ID]`: hands a QEMU guest its
 * fleet link on the kernel command line (`cohesix.fleet=URL
 * cohesix.fleet_id=ID cohesix.fleet_prefix=P`, read by
 * root-task/guest.ts). A loopback broker means this machine, which QEMU
 * user networking shows the guest as its gateway (10.0.2.2), so the URL is
 * rewritten for it. Credentials and certificate files do not go on a
 * command line: the image built from the project carries them
 * (`/etc/cohesix/fleet/`, rootfs/fleet-files.ts), the command line only
 * `url`, `id` and `prefix`.
 * @module
 */
import { str, UsageError, type Parsed } from "./args.ts";
import { fleetSettingsOf } from "./local.ts";
import type { ProjectConfig } from "../project/index.ts";

const LOOPBACK_URL = /^(mqtts?:\/\/)(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(\/.*)?$/;

/**
 * The broker URL as the guest must dial it: a loopback host becomes the
 * gateway; others pass unchanged.
 *
 * @example
 * ```ts
 * guestBrokerUrl("mqtt://127.0.0.1:1883", "10.0.2.2"); // { url: "mqtt://10.0.2.2:1883", rewritten: true }
 * ```
 */
export function guestBrokerUrl(url: string, gateway: string): { url: string; rewritten: boolean } {
  const m = LOOPBACK_URL.exec(url);
  if (!m) return { url, rewritten: false };
  return { url: `${m[1]}${gateway}${m[3] ?? ""}${m[4] ?? ""}`, rewritten: true };
}

/**
 * The kernel command line words for the guest's fleet link, or "" without
 * `--fleet` and a fleet block. The fleet block's password and files reach
 * the guest only baked into the image it boots (`baked`: the boot builds
 * it from the project); otherwise they are refused.
 *
 * @example
 * ```ts
 * guestFleetCmdline(parsed, project, "10.0.2.2", say); // "cohesix.fleet=mqtt://10.0.2.2:1883 cohesix.fleet_id=app-1"
 * ```
 */
export function guestFleetCmdline(p: Parsed, project: ProjectConfig | undefined, gateway: string, say: (line: string) => void, options: { readonly baked?: boolean } = {}): string {
  const settings = fleetSettingsOf(p, project);
  if (!settings) return "";
  if (str(p, "disk") !== undefined) throw new UsageError("--fleet does not reach a disk image boot: its command line is in its extlinux.conf (cohesix image --append cohesix.fleet=URL)");
  const files = (["username", "password", "ca", "cert", "key"] as const).filter((k) => settings[k] !== undefined);
  if (files.length > 0 && options.baked !== true) {
    throw new UsageError(`the fleet block's ${files.join(", ")} cannot reach a QEMU guest on its command line: boot with --fleet URL --fleet-id ID against a broker that needs neither, or use the host board (--board host)`);
  }
  const { url, rewritten } = guestBrokerUrl(settings.url, gateway);
  if (rewritten) say(`boot: broker ${settings.url} is on this host: the guest dials it as ${url}`);
  return [`cohesix.fleet=${url}`, ...(settings.id !== undefined ? [`cohesix.fleet_id=${settings.id}`] : []), ...(settings.prefix !== undefined ? [`cohesix.fleet_prefix=${settings.prefix}`] : [])].join(" ");
}
