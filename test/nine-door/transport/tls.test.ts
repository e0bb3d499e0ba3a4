import { once } from "node:events";
import net from "node:net";
import type { Duplex } from "node:stream";
import { execa } from "execa";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { InvalidError, NineError, NotFoundError, PermissionError } from "../../../nine-door/errors.ts";
import {
  certificateFingerprint,
  dial,
  listen,
  makeSelfSignedCert,
  normalizeFingerprint,
  type Listener,
  type SelfSignedCert,
} from "../../../nine-door/transport/index.ts";
import { Cleanup, echo, readAll, rejection } from "./helpers.ts";

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

let pair: SelfSignedCert;
let other: SelfSignedCert;
beforeAll(async () => {
  [pair, other] = await Promise.all([
    makeSelfSignedCert({ commonName: "ninedoor-test", altNames: ["DNS:localhost", "IP:127.0.0.1"], days: 2 }),
    makeSelfSignedCert({ commonName: "impostor", days: 2 }),
  ]);
});

async function tlsListener(onConnection: (conn: Duplex) => void = echo, cert = pair): Promise<Listener> {
  const listener = await listen("tls!127.0.0.1!0", onConnection, { tls: cert });
  cleanup.add(() => listener.close());
  return listener;
}

describe("TLS", () => {
  it("dial() with a matching pin talks to a server with a self-signed certificate", async () => {
    const listener = await tlsListener();
    expect(listener.dialString).toMatch(/^tls!127\.0\.0\.1!\d+$/);
    const conn = cleanup.stream(await dial(listener.dialString, { pin: certificateFingerprint(pair.cert) }));
    conn.end("encrypted hello");
    expect(await readAll(conn)).toBe("encrypted hello");
  });

  it("dial() accepts the pin as plain lower-case hex too", async () => {
    const listener = await tlsListener();
    const plain = certificateFingerprint(pair.cert).replaceAll(":", "").toLowerCase();
    const conn = cleanup.stream(await dial(listener.dialString, { pin: plain }));
    conn.end("x");
    expect(await readAll(conn)).toBe("x");
  });

  it("dial() with a wrong pin is refused with PermissionError and the connection is dropped", async () => {
    const serverSide: Duplex[] = [];
    const listener = await tlsListener((conn) => serverSide.push(conn));
    const expected = certificateFingerprint(other.cert);
    const actual = certificateFingerprint(pair.cert);
    const err = await rejection(dial(listener.dialString, { pin: expected }));
    expect(err).toBeInstanceOf(PermissionError);
    expect((err as Error).message).toBe(
      `permission: dial ${listener.dialString}: TLS certificate fingerprint mismatch: expected ${expected}, got ${actual}`,
    );
    // Whether or not the server finished its side of the handshake, the client hung up.
    for (let i = 0; i < 200 && !serverSide.every((c) => c.destroyed); i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(serverSide.every((c) => c.destroyed)).toBe(true);
    expect(listener.connections).toBe(0);
  });

  it("dial() without a pin verifies against CAs and refuses a self-signed certificate", async () => {
    const listener = await tlsListener();
    const err = await rejection(dial(listener.dialString));
    expect(err).toBeInstanceOf(PermissionError);
    expect((err as Error).message).toMatch(/TLS certificate not trusted: .*pass `pin`/);
  });

  it("dial() without a pin accepts a certificate its ca option trusts", async () => {
    const listener = await tlsListener();
    const conn = cleanup.stream(await dial(listener.dialString, { ca: pair.cert }));
    conn.end("trusted");
    expect(await readAll(conn)).toBe("trusted");
  });

  it("dial() refuses a malformed pin with InvalidError before connecting", async () => {
    await expect(dial("tls!127.0.0.1!1", { pin: "AB:CD" })).rejects.toThrow(
      new InvalidError('TLS pin "AB:CD": expected a SHA-256 fingerprint, 64 hex digits with or without colons'),
    );
  });

  it("a failed handshake is reported to onError and the listener keeps serving", async () => {
    const reported: NineError[] = [];
    const listener = await listen("tls!127.0.0.1!0", echo, { tls: pair, onError: (e) => reported.push(e) });
    cleanup.add(() => listener.close());
    const port = listener.address.kind === "tls" ? listener.address.port : 0;
    const plain = cleanup.stream(net.connect({ host: "127.0.0.1", port }));
    plain.on("error", () => {});
    plain.resume();
    plain.write("this is not a TLS client hello\r\n\r\n");
    await once(plain, "close");
    while (reported.length === 0) await new Promise((r) => setTimeout(r, 5));
    expect(reported[0]?.message).toMatch(/^\w[\w ]*: listen tls!127\.0\.0\.1!\d+: TLS handshake with tls!127\.0\.0\.1!\d+: /);

    const conn = cleanup.stream(await dial(listener.dialString, { pin: certificateFingerprint(pair.cert) }));
    conn.end("fine");
    expect(await readAll(conn)).toBe("fine");
  });

  it("listen() refuses an unusable key or certificate with InvalidError", async () => {
    await expect(listen("tls!127.0.0.1!0", echo, { tls: { key: "nonsense", cert: pair.cert } })).rejects.toThrow(
      /^invalid: listen tls!127\.0\.0\.1!0: TLS key or certificate unusable: /,
    );
  });
});

describe("certificates", () => {
  it("certificateFingerprint() agrees with openssl x509 -fingerprint -sha256", async () => {
    const { stdout } = await execa("openssl", ["x509", "-noout", "-fingerprint", "-sha256"], { input: pair.cert });
    expect(stdout.split("=")[1]).toBe(certificateFingerprint(pair.cert));
  });

  it("certificateFingerprint() refuses text that is not a certificate", () => {
    expect(() => certificateFingerprint("-----BEGIN NOTHING-----")).toThrow(/^invalid: certificate: not a PEM X\.509 certificate: /);
  });

  it("normalizeFingerprint() reads colons or none, any case", () => {
    const fp = certificateFingerprint(pair.cert);
    expect(normalizeFingerprint(fp.toLowerCase())).toBe(fp);
    expect(normalizeFingerprint(fp.replaceAll(":", ""))).toBe(fp);
  });

  it("makeSelfSignedCert() makes a certificate for the common name, valid for the days asked", async () => {
    const { X509Certificate } = await import("node:crypto");
    const x509 = new X509Certificate(pair.cert);
    expect(x509.subject).toBe("CN=ninedoor-test");
    expect(x509.subjectAltName).toBe("DNS:localhost, IP Address:127.0.0.1");
    const days = (Date.parse(x509.validTo) - Date.parse(x509.validFrom)) / 86_400_000;
    expect(days).toBe(2);
    expect(pair.key).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  it("makeSelfSignedCert() says to install openssl when it is missing", async () => {
    const err = await rejection(makeSelfSignedCert({ commonName: "x", openssl: "/nonexistent/openssl" }));
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toContain("apt-get install openssl");
  });

  it("makeSelfSignedCert() refuses a common name openssl would misread", async () => {
    await expect(makeSelfSignedCert({ commonName: "a/O=evil" })).rejects.toThrow(InvalidError);
    await expect(makeSelfSignedCert({ commonName: "ok", days: 0 })).rejects.toThrow(InvalidError);
  });
});
