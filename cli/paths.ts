/**
 * Per-user default locations (XDG): keys in ~/.config/cohesix.
 * @module
 */
import { homedir } from "node:os";
import { join } from "node:path";

/** `$XDG_CONFIG_HOME/cohesix` or `~/.config/cohesix`. */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), ".config"), "cohesix");
}

/** The default queen private key: `~/.config/cohesix/queen.key`. */
export function defaultQueenKey(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), "queen.key");
}

/** The default queen public key: `~/.config/cohesix/queen.pub`. */
export function defaultQueenPub(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), "queen.pub");
}

/** The default release private key (signs disk images): `~/.config/cohesix/release.key`. */
export function defaultReleaseKey(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), "release.key");
}

/** The default release public key (checks disk images): `~/.config/cohesix/release.pub`. */
export function defaultReleasePub(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), "release.pub");
}
