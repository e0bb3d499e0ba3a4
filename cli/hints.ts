/**
 * What the CLI adds to an error so that its one line says what to do: a
 * listen address in use, a queen key file that is missing or is no key, an
 * attach refused for the key or the clock, TLS dialled to a plain port.
 * Each function takes the error as it came and returns the error to throw.
 * @module
 */
import { readFile, stat } from "node:fs/promises";
import { NineError, NotFoundError, InvalidError, PermissionError } from "../nine-door/index.ts";
import { keyId, publicKeyOf, readPrivateKey } from "../root-task/index.ts";

function code(err: unknown): string | undefined {
  return (err as { code?: string } | undefined)?.code;
}

/**
 * A listen that failed because the address is taken, as one `io:` line
 * naming it; other errors pass through.
 *
 * @example
 * ```ts
 * await startBridge({ listen }).catch((err) => { throw inUse(err, listen, "--listen"); });
 * // io: 127.0.0.1:5650 is in use: stop what listens there or choose another --listen (port 0 picks a free one)
 * ```
 */
export function inUse(err: unknown, listen: string, option = "--listen"): unknown {
  if (code(err) !== "EADDRINUSE" && !/\bEADDRINUSE\b/.test((err as Error | undefined)?.message ?? "")) return err;
  const shown = listen.replace(/^(tcp|tls)!([^!]+)!(\d+)$/, "$2:$3");
  return new NineError("io", `${shown} is in use: stop what listens there or choose another ${option} (port 0 picks a free one)`);
}

/**
 * Reads the queen's private key named by `--key` (or its default), saying
 * plainly when the file is missing or is not a key at all before anything
 * complains about its mode.
 *
 * @example
 * ```ts
 * const key = await readQueenKey("/home/me/.config/cohesix/queen.key");
 * ```
 */
export async function readQueenKey(path: string): Promise<Uint8Array> {
  const info = await stat(path).catch((err: unknown) => {
    if (code(err) === "ENOENT" || code(err) === "ENOTDIR") {
      return undefined;
    }
    throw err;
  });
  if (info === undefined) {
    throw new NotFoundError(
      `queen key ${path} does not exist: give the queen's private key with --key FILE (default ~/.config/cohesix/queen.key, env COHESIX_KEY); \`cohesix keygen --out DIR\` makes DIR/queen.key and DIR/queen.pub`,
    );
  }
  if (info.isFile() && info.size <= 1024) {
    const head = await readFile(path, "utf8").catch(() => undefined);
    if (head?.startsWith("cohesix-ed25519-public")) {
      const priv = path.endsWith(".pub") ? `${path.slice(0, -4)}.key` : "its .key file";
      throw new InvalidError(`${path} is a public key: --key takes the private half (${priv})`);
    }
    if (head !== undefined && !head.startsWith("cohesix-ed25519-")) {
      throw new InvalidError(`${path} is not a key: a queen key is one line \`cohesix-ed25519-private …\` (cohesix keygen makes one)`);
    }
  } else if (info.isFile()) {
    throw new InvalidError(`${path} is not a key: it is ${info.size} bytes, a queen key is one short line \`cohesix-ed25519-private …\``);
  }
  return readPrivateKey(path);
}

/** What {@link explainAttach} knows about the attempt. */
export interface AttachAttempt {
  /** The private key file the ticket was signed with. */
  readonly keyPath: string;
  readonly key: Uint8Array;
  /** This host's time when the ticket was minted; default now. */
  readonly nowMs?: number;
}

/**
 * An attach the appliance refused, with what to do: for a signature that
 * does not verify, the key this host used and how to use the right one; for
 * an expired or future ticket, this host's clock beside the appliance's
 * (which the appliance names) and how to set the guest's clock.
 *
 * @example
 * ```ts
 * await client.attach({ uname: "queen", aname }).catch((err) => { throw explainAttach(err, { keyPath, key }); });
 * ```
 */
export function explainAttach(err: unknown, attempt: AttachAttempt): unknown {
  if (!(err instanceof NineError) || err.errorClass !== "permission") return err;
  const message = err.message.replace(/^permission: /, "");
  if (/ticket signature does not verify/.test(message)) {
    const id = keyId(publicKeyOf(attempt.key));
    return new PermissionError(
      `${message}; this host signed with queen key ${id} (${attempt.keyPath}): give the private half of the queen.pub the appliance was built with (--key FILE or COHESIX_KEY), or rebuild it with this key's .pub (cohesix build --queen-pub FILE; cohesix keygen makes a pair)`,
    );
  }
  if (/ticket (expired at|not valid until)/.test(message)) {
    const host = new Date(attempt.nowMs ?? Date.now()).toISOString();
    return new PermissionError(`${message}; this host's clock reads ${host}: set the guest's clock to the host's (boot --rtc-base utc, the default) or this host's clock`);
  }
  return err;
}

/**
 * A TLS dial that met a server speaking something else (a plain 9P port),
 * as one `io:` line; other errors pass through.
 *
 * @example
 * ```ts
 * await dial(addr, { pin }).catch((err) => { throw plainPort(err, "tls!127.0.0.1!5640"); });
 * ```
 */
export function plainPort(err: unknown, dialString: string): unknown {
  // Already classified (a pin mismatch is permission:): keep it.
  if (err instanceof NineError && err.errorClass !== "io") return err;
  const text = (err as Error | undefined)?.message ?? "";
  const c = code(err) ?? "";
  const tlsNoise = /ssl routines|wrong version number|packet length too long|unknown protocol|socket disconnected before secure TLS/i;
  if (!c.startsWith("ERR_SSL") && !tlsNoise.test(text)) return err;
  const plain = dialString.replace(/^tls!/, "tcp!");
  return new NineError("io", `${dialString} does not speak TLS (is it a plain-TCP appliance? dial ${plain} and drop --pin)`);
}
