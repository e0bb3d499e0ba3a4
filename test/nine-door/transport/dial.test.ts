import { describe, expect, it } from "vitest";
import { InvalidError } from "../../../nine-door/errors.ts";
import {
  formatDialString,
  parseDialString,
  parseListenAddress,
  type DialAddress,
} from "../../../nine-door/transport/index.ts";

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}

describe("parseDialString", () => {
  const good: Array<[string, DialAddress]> = [
    ["tcp!127.0.0.1!564", { kind: "tcp", host: "127.0.0.1", port: 564 }],
    ["tcp!appliance.local!5640", { kind: "tcp", host: "appliance.local", port: 5640 }],
    ["tcp!::1!564", { kind: "tcp", host: "::1", port: 564 }],
    ["tls!10.0.2.2!5641", { kind: "tls", host: "10.0.2.2", port: 5641 }],
    ["unix!/run/ninedoor.sock", { kind: "unix", path: "/run/ninedoor.sock" }],
    ["unix!relative/nd.sock", { kind: "unix", path: "relative/nd.sock" }],
    ["unix!/tmp/odd!name", { kind: "unix", path: "/tmp/odd!name" }],
    ["127.0.0.1:5640", { kind: "tcp", host: "127.0.0.1", port: 5640 }],
    ["localhost:0", { kind: "tcp", host: "localhost", port: 0 }],
    ["[::1]:5640", { kind: "tcp", host: "::1", port: 5640 }],
    ["[fe80::1]:65535", { kind: "tcp", host: "fe80::1", port: 65535 }],
  ];
  for (const [input, expected] of good) {
    it(`reads ${input}`, () => {
      expect(parseDialString(input)).toEqual(expected);
    });
  }

  const bad: Array<[string, string]> = [
    ["", "empty"],
    [" tcp!h!1", "white space"],
    ["tcp!h!1\n", "white space"],
    ["udp!h!53", 'unsupported network "udp"'],
    ["net!h!564", 'unsupported network "net"'],
    ["tcp!h", "expected tcp!HOST!PORT"],
    ["tcp!h!1!2", "expected tcp!HOST!PORT"],
    ["tcp!!564", "missing host"],
    ["tcp!h!", "missing port"],
    ["tcp!h!9fs", 'port "9fs" is not a decimal number'],
    ["tcp!h!-1", 'port "-1" is not a decimal number'],
    ["tcp!h!65536", "port 65536 is out of range 0-65535"],
    ["tcp!h!123456", "port 123456 is out of range 0-65535"],
    ["tcp!h o!1", "contains characters not allowed"],
    ["tcp![::1]!1", "take no brackets"],
    ["tcp!1:2:3:zz!1", "not a valid IPv6 address"],
    ["tcp!*!564", "contains characters not allowed"],
    ["tls!h!x", 'port "x" is not a decimal number'],
    ["unix!", "missing socket path"],
    [`unix!/tmp/${"x".repeat(120)}`, "longer than the 107 bytes"],
    ["unix!/tmp/a\0b", "NUL byte"],
    ["/run/ninedoor.sock", "needs the unix! prefix"],
    ["localhost", "missing port"],
    ["localhost:", "missing port"],
    [":564", "missing host"],
    ["h:p", 'port "p" is not a decimal number'],
    ["::1:564", "needs brackets"],
    ["[::1]", 'missing ":PORT"'],
    ["[::1:564", 'missing "]"'],
    ["[::1]564", 'missing ":PORT"'],
    ["[zz]:1", "not a valid IPv6 address"],
    ["[::1]:99999", "port 99999 is out of range"],
  ];
  for (const [input, why] of bad) {
    it(`refuses ${JSON.stringify(input)} saying ${why}`, () => {
      const err = caught(() => parseDialString(input));
      expect(err).toBeInstanceOf(InvalidError);
      const message = (err as Error).message;
      expect(message.startsWith(`invalid: dial string ${JSON.stringify(input)}: `)).toBe(true);
      expect(message).toContain(why);
    });
  }

  it("suggests the accepted forms when the form is wrong", () => {
    expect(() => parseDialString("tcp!h")).toThrow(
      /expected tcp!HOST!PORT, tls!HOST!PORT, unix!\/PATH, HOST:PORT or \[IPV6\]:PORT/,
    );
  });
});

describe("formatDialString", () => {
  it("writes the canonical bang form", () => {
    expect(formatDialString({ kind: "tcp", host: "127.0.0.1", port: 564 })).toBe("tcp!127.0.0.1!564");
    expect(formatDialString({ kind: "tls", host: "::1", port: 5641 })).toBe("tls!::1!5641");
    expect(formatDialString({ kind: "unix", path: "/run/nd.sock" })).toBe("unix!/run/nd.sock");
  });

  it("round-trips every address parseDialString reads", () => {
    for (const input of ["tcp!a.b!1", "tls!::1!2", "unix!/x!y", "[::1]:3", "h:4"]) {
      const addr = parseDialString(input);
      expect(parseDialString(formatDialString(addr))).toEqual(addr);
    }
  });
});

describe("parseListenAddress", () => {
  it("reads the server's --listen HOST:PORT with port 0", () => {
    expect(parseListenAddress("127.0.0.1:0")).toEqual({ kind: "tcp", host: "127.0.0.1", port: 0 });
  });

  it("accepts dial strings too", () => {
    expect(parseListenAddress("unix!/run/nd.sock")).toEqual({ kind: "unix", path: "/run/nd.sock" });
    expect(parseListenAddress("tls!0.0.0.0!5641")).toEqual({ kind: "tls", host: "0.0.0.0", port: 5641 });
  });

  it("reads an empty or * host as every IPv4 interface", () => {
    expect(parseListenAddress(":5640")).toEqual({ kind: "tcp", host: "0.0.0.0", port: 5640 });
    expect(parseListenAddress("*:5640")).toEqual({ kind: "tcp", host: "0.0.0.0", port: 5640 });
    expect(parseListenAddress("tcp!*!564")).toEqual({ kind: "tcp", host: "0.0.0.0", port: 564 });
  });

  it("still refuses a missing port", () => {
    expect(() => parseListenAddress("127.0.0.1")).toThrow(InvalidError);
  });
});
