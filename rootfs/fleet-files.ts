/**
 * The fleet link's files in an image (docs/fleet.md, "A guest's fleet
 * block"): a project's `fleet` block is baked into the initramfs at build,
 * as the queen's key is. The CA to pin, the client certificate, its key and
 * the broker password go to `/etc/cohesix/fleet/` (`ca.pem`, `client.pem`,
 * `client.key` 0600, `password` 0600) and the block, naming those guest
 * paths instead of host paths or the password itself, goes into
 * `/etc/cohesix/config.json` as `fleet`.
 * @module
 */
import { readFile } from "node:fs/promises";
import { NotFoundError } from "../nine-door/index.ts";
import type { FleetSettings } from "../root-task/index.ts";
import type { CpioEntry } from "./cpio-entry.ts";

/** Where a guest finds its fleet files. */
export const GUEST_FLEET_FILES = {
  dir: "/etc/cohesix/fleet",
  ca: "/etc/cohesix/fleet/ca.pem",
  cert: "/etc/cohesix/fleet/client.pem",
  key: "/etc/cohesix/fleet/client.key",
  password: "/etc/cohesix/fleet/password",
} as const;

/** A project's fleet block as the build takes it (the root task's `FleetSettings`): `ca`, `cert`, `key` are host files. */
export type ImageFleet = FleetSettings;

/** The `fleet` section of the guest config: files are guest paths, the password a file. */
export type GuestFleetConfig = Omit<ImageFleet, "password"> & { readonly passwordFile?: string };

/**
 * The image entries and guest config section of a fleet block. Secrets
 * (the client key and the password) are 0600, certificates 0644; a host
 * file that cannot be read is refused by name.
 *
 * @example
 * ```ts
 * const { entries, config } = await fleetImageEntries({ url: "mqtts://broker:8883", ca: "/proj/ca.pem", password: "s3cret" });
 * config; // { url: "mqtts://broker:8883", ca: "/etc/cohesix/fleet/ca.pem", passwordFile: "/etc/cohesix/fleet/password" }
 * ```
 */
export async function fleetImageEntries(fleet: ImageFleet): Promise<{ entries: CpioEntry<Uint8Array>[]; config: GuestFleetConfig }> {
  const { password, ca, cert, key, ...rest } = fleet;
  const entries: CpioEntry<Uint8Array>[] = [];
  const read = async (what: string, src: string): Promise<Uint8Array> =>
    readFile(src).catch((err: NodeJS.ErrnoException) => {
      throw new NotFoundError(`image: fleet ${what} file ${src}: ${err.code ?? err.message}: fix the fleet block of cohesix.config.json`);
    });
  const files: Partial<Record<"ca" | "cert" | "key" | "passwordFile", string>> = {};
  const add = (path: string, data: Uint8Array, mode: number): void => {
    if (entries.length === 0) entries.push({ type: "dir", path: GUEST_FLEET_FILES.dir, mode: 0o700 });
    entries.push({ type: "file", path, data, mode });
  };
  if (ca !== undefined) {
    add(GUEST_FLEET_FILES.ca, await read("CA", ca), 0o644);
    files.ca = GUEST_FLEET_FILES.ca;
  }
  if (cert !== undefined) {
    add(GUEST_FLEET_FILES.cert, await read("client certificate", cert), 0o644);
    files.cert = GUEST_FLEET_FILES.cert;
  }
  if (key !== undefined) {
    add(GUEST_FLEET_FILES.key, await read("client key", key), 0o600);
    files.key = GUEST_FLEET_FILES.key;
  }
  if (password !== undefined) {
    add(GUEST_FLEET_FILES.password, new TextEncoder().encode(password), 0o600);
    files.passwordFile = GUEST_FLEET_FILES.password;
  }
  return { entries, config: { ...rest, ...files } };
}
