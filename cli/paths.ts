/**
 * Per-user default locations (XDG): keys in ~/.config/cohesix, made on
 * first use.
 * @module
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { writeKeyPair } from "../root-task/index.ts";

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

/**
 * `path`, one half of the default `name` key pair in {@link configDir},
 * after making the pair there if it does not exist yet (said on `err`, with
 * the key id, so the user knows a new key now signs).
 */
export async function ensureDefaultKey(name: "queen" | "release", path: string, env: NodeJS.ProcessEnv, err: (text: string) => void): Promise<string> {
  if (!existsSync(path)) {
    const written = await writeKeyPair(configDir(env), { name });
    err(`made ${name} key ${written.privatePath} (key id ${written.id})\n`);
  }
  return path;
}
