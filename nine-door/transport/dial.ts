/**
 * Plan 9 dial strings: the one text form of a transport address.
 *
 * `tcp!HOST!PORT`, `tls!HOST!PORT` and `unix!/PATH` are canonical; `HOST:PORT`
 * and `[IPV6]:PORT` are accepted as TCP for convenience. Parsing never
 * touches the network: names are resolved when dialling or listening.
 *
 * @module
 */

import { isIPv6 } from "node:net";
import { InvalidError } from "../errors.ts";

/** A parsed transport address. Hosts never carry IPv6 brackets. */
export type DialAddress =
  | { kind: "tcp"; host: string; port: number }
  | { kind: "tls"; host: string; port: number }
  | { kind: "unix"; path: string };

/** The transport names a dial string may start with. */
export type DialKind = DialAddress["kind"];

const EXPECTED = "expected tcp!HOST!PORT, tls!HOST!PORT, unix!/PATH, HOST:PORT or [IPV6]:PORT";

/** Linux `sun_path` is 108 bytes including the terminating NUL. */
const MAX_UNIX_PATH_BYTES = 107;

const HOST_CHARS = /^[A-Za-z0-9._%-]+$/;
const WILDCARD_HOSTS = new Set(["*", ""]);

function bad(input: string, why: string): InvalidError {
  return new InvalidError(`dial string ${JSON.stringify(input)}: ${why}`);
}

function parsePort(input: string, text: string): number {
  if (!/^[0-9]+$/.test(text)) {
    throw bad(input, text === "" ? `missing port; ${EXPECTED}` : `port ${JSON.stringify(text)} is not a decimal number`);
  }
  const port = Number(text);
  if (port > 65535) throw bad(input, `port ${port} is out of range 0-65535`);
  return port;
}

function checkHost(input: string, host: string, wildcard: boolean): string {
  if (wildcard && WILDCARD_HOSTS.has(host)) return "0.0.0.0";
  if (host === "") throw bad(input, `missing host; ${EXPECTED}`);
  if (host.startsWith("[")) throw bad(input, "IPv6 addresses take no brackets in the ! form, as in tcp!::1!564");
  if (host.includes(":")) {
    if (!isIPv6(host)) throw bad(input, `host ${JSON.stringify(host)} is not a valid IPv6 address`);
    return host;
  }
  if (!HOST_CHARS.test(host)) {
    throw bad(input, `host ${JSON.stringify(host)} contains characters not allowed in a host name`);
  }
  return host;
}

function checkPath(input: string, path: string): string {
  if (path === "") throw bad(input, "missing socket path; expected unix!/PATH");
  if (path.includes("\0")) throw bad(input, "socket path contains a NUL byte");
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_UNIX_PATH_BYTES) {
    throw bad(input, `socket path is ${bytes} bytes, longer than the ${MAX_UNIX_PATH_BYTES} bytes a Unix socket allows`);
  }
  return path;
}

function parse(input: string, wildcard: boolean): DialAddress {
  if (typeof input !== "string" || input.trim() !== input || input === "") {
    throw bad(String(input), input === "" ? `empty; ${EXPECTED}` : `surrounding white space; ${EXPECTED}`);
  }
  const bang = input.indexOf("!");
  if (bang >= 0) {
    const kind = input.slice(0, bang);
    const rest = input.slice(bang + 1);
    if (kind === "unix") return { kind, path: checkPath(input, rest) };
    if (kind === "tcp" || kind === "tls") {
      const parts = rest.split("!");
      if (parts.length !== 2) throw bad(input, `${EXPECTED}`);
      const [host = "", port = ""] = parts;
      return { kind, host: checkHost(input, host, wildcard), port: parsePort(input, port) };
    }
    throw bad(input, `unsupported network ${JSON.stringify(kind)}; ${EXPECTED}`);
  }
  if (input.startsWith("[")) {
    const close = input.indexOf("]");
    if (close < 0) throw bad(input, `missing "]" after the IPv6 address; ${EXPECTED}`);
    const host = input.slice(1, close);
    const after = input.slice(close + 1);
    if (!after.startsWith(":")) throw bad(input, `missing ":PORT" after "]"; ${EXPECTED}`);
    if (!isIPv6(host)) throw bad(input, `host ${JSON.stringify(host)} is not a valid IPv6 address`);
    return { kind: "tcp", host, port: parsePort(input, after.slice(1)) };
  }
  if (input.startsWith("/")) throw bad(input, `a socket path needs the unix! prefix; ${EXPECTED}`);
  const colon = input.lastIndexOf(":");
  if (colon < 0) throw bad(input, `missing port; ${EXPECTED}`);
  const host = input.slice(0, colon);
  if (host.includes(":")) throw bad(input, "an IPv6 address with a port needs brackets, as in [::1]:564");
  return { kind: "tcp", host: checkHost(input, host, wildcard), port: parsePort(input, input.slice(colon + 1)) };
}

/**
 * Parses a dial string into a {@link DialAddress}.
 *
 * @throws {InvalidError} `invalid: dial string "…": <what is wrong>` for
 * anything that is not one of the accepted forms.
 *
 * @example
 * ```ts
 * parseDialString("tcp!10.0.2.15!564"); // { kind: "tcp", host: "10.0.2.15", port: 564 }
 * parseDialString("unix!/run/ninedoor.sock"); // { kind: "unix", path: "/run/ninedoor.sock" }
 * parseDialString("[::1]:5640"); // { kind: "tcp", host: "::1", port: 5640 }
 * ```
 */
export function parseDialString(s: string): DialAddress {
  return parse(s, false);
}

/**
 * Parses the server's `--listen` value. Accepts everything
 * {@link parseDialString} does, plus a wildcard host (`:5640`, `*:5640`,
 * `tcp!*!5640`) meaning every IPv4 interface (`0.0.0.0`). Port 0 asks the
 * system for a free port.
 *
 * @example
 * ```ts
 * parseListenAddress("127.0.0.1:0"); // { kind: "tcp", host: "127.0.0.1", port: 0 }
 * parseListenAddress(":5640");       // { kind: "tcp", host: "0.0.0.0", port: 5640 }
 * ```
 */
export function parseListenAddress(s: string): DialAddress {
  return parse(s, true);
}

/**
 * Formats an address as a canonical dial string; the inverse of
 * {@link parseDialString}.
 *
 * @example
 * ```ts
 * formatDialString({ kind: "tcp", host: "::1", port: 564 }); // "tcp!::1!564"
 * formatDialString({ kind: "unix", path: "/run/nd.sock" });  // "unix!/run/nd.sock"
 * ```
 */
export function formatDialString(addr: DialAddress): string {
  return addr.kind === "unix" ? `unix!${addr.path}` : `${addr.kind}!${addr.host}!${addr.port}`;
}

/**
 * Accepts either form a caller may hold, parsed or text; text is parsed with
 * {@link parseListenAddress} when `listen` is set, else {@link parseDialString}.
 *
 * @example
 * ```ts
 * toDialAddress("127.0.0.1:0", { listen: true }); // { kind: "tcp", host: "127.0.0.1", port: 0 }
 * ```
 */
export function toDialAddress(addr: DialAddress | string, options?: { listen?: boolean }): DialAddress {
  if (typeof addr !== "string") return addr;
  return options?.listen === true ? parseListenAddress(addr) : parseDialString(addr);
}
