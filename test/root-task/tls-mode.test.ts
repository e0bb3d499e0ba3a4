/**
 * The `auto|on|off` TLS setting and the rule `auto` follows: TLS off
 * loopback, plain TCP on loopback and behind QEMU's host forward.
 */
import { describe, expect, test } from "vitest";
import { chooseTls, isLoopbackHost, parseTlsSetting } from "../../root-task/index.ts";

describe("chooseTls", () => {
  test("auto serves TLS on every interface that is not loopback", () => {
    expect(chooseTls("auto", { listen: "0.0.0.0:5640" })).toEqual({ tls: true, reason: "not loopback" });
    expect(chooseTls("auto", { listen: "tcp!192.168.1.40!5640" })).toEqual({ tls: true, reason: "not loopback" });
    expect(chooseTls("auto", { listen: "[::]:5640" })).toEqual({ tls: true, reason: "not loopback" });
  });

  test("auto keeps plain TCP on loopback", () => {
    for (const listen of ["127.0.0.1:0", "tcp!127.0.0.2!5640", "[::1]:5640", "localhost:5640"]) {
      expect(chooseTls("auto", { listen })).toEqual({ tls: false, reason: "loopback" });
    }
  });

  test("auto keeps plain TCP under QEMU user networking, where only the host forward reaches the guest", () => {
    expect(chooseTls("auto", { listen: "0.0.0.0:5640", qemuUserNet: true })).toEqual({ tls: false, reason: "qemu user networking" });
    expect(chooseTls("auto", { listen: "0.0.0.0:5640", qemuUserNet: false }).tls).toBe(true);
  });

  test("on and off say it outright, whatever the address", () => {
    expect(chooseTls("on", { listen: "127.0.0.1:0" })).toEqual({ tls: true, reason: "setting on" });
    expect(chooseTls("on", { listen: "0.0.0.0:5640", qemuUserNet: true }).tls).toBe(true);
    expect(chooseTls("off", { listen: "0.0.0.0:5640" })).toEqual({ tls: false, reason: "setting off" });
  });

  test("a tls! address is TLS under auto and on, and refused under off", () => {
    expect(chooseTls("auto", { listen: "tls!127.0.0.1!0" })).toEqual({ tls: true, reason: "tls! address" });
    expect(chooseTls("on", { listen: "tls!0.0.0.0!5640" }).tls).toBe(true);
    expect(() => chooseTls("off", { listen: "tls!0.0.0.0!5640" })).toThrow(/^invalid: tls off: /);
  });

  test("a unix! address is never TLS, and on refuses it", () => {
    expect(chooseTls("auto", { listen: "unix!/tmp/nd.sock" })).toEqual({ tls: false, reason: "unix socket" });
    expect(() => chooseTls("on", { listen: "unix!/tmp/nd.sock" })).toThrow(/^invalid: tls on: /);
  });
});

describe("parseTlsSetting and isLoopbackHost", () => {
  test("parseTlsSetting takes auto, on and off and names the source of anything else", () => {
    expect(["auto", "on", "off"].map((t) => parseTlsSetting(t))).toEqual(["auto", "on", "off"]);
    expect(() => parseTlsSetting("yes", { source: "cohesix.tls" })).toThrow('invalid: cohesix.tls: "yes" is not one of auto, on, off');
  });

  test("isLoopbackHost knows 127/8, ::1, localhost and mapped loopback, and nothing else", () => {
    expect(["127.0.0.1", "127.9.9.9", "::1", "localhost", "::ffff:127.0.0.1"].every(isLoopbackHost)).toBe(true);
    expect(["0.0.0.0", "10.0.2.15", "::", "128.0.0.1", "example.com"].some(isLoopbackHost)).toBe(false);
  });
});
