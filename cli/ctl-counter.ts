/**
 * The last signed-ctl counter each appliance accepted from this host's
 * queen, so that a ctl in steady state costs no read of `/queen/ctr`: the
 * next command is signed with the remembered counter + 1. One line per
 * appliance and queen key, in `$XDG_CONFIG_HOME/cohesix/ctl_counters`
 * beside `known_hosts`:
 *
 * ```text
 * tcp!127.0.0.1!5640 3f9a0c1d22e4b871 42
 * ```
 *
 * It is a cache, not a record: the appliance keeps the counter (in its
 * commit log) and refuses one that is not above the last it accepted. A
 * remembered counter that another queen has passed meanwhile is refused,
 * and `sendCtl` then reads `/queen/ctr` and signs again (see remote.ts);
 * the file never makes a command fail that would otherwise work.
 * @module
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { keyId, publicKeyOf } from "../root-task/index.ts";
import { configDir } from "./paths.ts";

/** Most appliances remembered; the least recently used are forgotten first. */
export const MAX_CTL_COUNTERS = 256;

/**
 * `$XDG_CONFIG_HOME/cohesix/ctl_counters` (or `~/.config/cohesix/ctl_counters`).
 *
 * @example
 * ```ts
 * ctlCountersPath({ XDG_CONFIG_HOME: "/tmp/cfg" }); // "/tmp/cfg/cohesix/ctl_counters"
 * ```
 */
export function ctlCountersPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), "ctl_counters");
}

/** Where `sendCtl` gets the counter to sign with, and tells the one accepted. */
export interface CtlCounterStore {
  /** The last counter the appliance accepted from this queen, if known. */
  last(): Promise<number | undefined>;
  /** The appliance accepted `ctr`. */
  accepted(ctr: number): Promise<void>;
}

const LINE = /^(\S+) ([0-9a-f]{16}) ([0-9]{1,16})$/;

/**
 * The counter file's entry for one appliance (its dial string) and one
 * queen key, read once and then kept in memory for a session (`cohesix sh`
 * sends many commands).
 *
 * @example
 * ```ts
 * const counter = new CtlCounterFile(ctlCountersPath(env), { dial: "tcp!127.0.0.1!5640", key: queenKey });
 * await sendCtl(root, queenKey, '{"budget":{"ops":5}}', { counter });
 * ```
 */
export class CtlCounterFile implements CtlCounterStore {
  readonly #path: string;
  readonly #slot: string;
  #last: number | undefined;
  #read = false;

  constructor(path: string, options: { readonly dial: string; readonly key: Uint8Array }) {
    this.#path = path;
    this.#slot = `${options.dial} ${keyId(publicKeyOf(options.key))}`;
  }

  async last(): Promise<number | undefined> {
    if (!this.#read) {
      this.#read = true;
      this.#last = (await this.#entries()).find((e) => e.slot === this.#slot)?.ctr;
    }
    return this.#last;
  }

  async accepted(ctr: number): Promise<void> {
    this.#last = ctr;
    this.#read = true;
    try {
      // Another CLI may rewrite the file at the same time: the last rename
      // wins, and a counter lost that way costs one read of /queen/ctr later.
      const kept = (await this.#entries()).filter((e) => e.slot !== this.#slot).slice(-(MAX_CTL_COUNTERS - 1));
      const text = [...kept, { slot: this.#slot, ctr }].map((e) => `${e.slot} ${e.ctr}\n`).join("");
      await mkdir(dirname(this.#path), { recursive: true });
      const tmp = `${this.#path}.${process.pid}.tmp`;
      await writeFile(tmp, text, { mode: 0o600 });
      await rename(tmp, this.#path);
    } catch {
      // A cache: a read-only config directory only costs a read of /queen/ctr next time.
    }
  }

  async #entries(): Promise<Array<{ slot: string; ctr: number }>> {
    let text: string;
    try {
      text = await readFile(this.#path, "utf8");
    } catch {
      return [];
    }
    const out: Array<{ slot: string; ctr: number }> = [];
    for (const line of text.split("\n")) {
      const m = LINE.exec(line.trim());
      if (m && Number.isSafeInteger(Number(m[3]))) out.push({ slot: `${m[1]} ${m[2]}`, ctr: Number(m[3]) });
    }
    return out;
  }
}
