/**
 * The host's side of the broker: one MQTT 3.1.1 connection for the
 * `cohesix fleet` verbs (and any operator tool), with the same options as
 * the appliance's link (credentials, a pinned CA, a client certificate) and
 * nothing broker-specific, so it works the same against mosquitto, a
 * bridge or a clustered broker.
 *
 * A failed first connection is one error a user can act on:
 * `permission: fleet: broker mqtts://h:8883 refused the login: Not authorized: check --username and the password`,
 * `permission: fleet: broker mqtts://h:8883: its TLS certificate does not verify against the pinned CA: self-signed certificate in certificate chain`,
 * `closed: fleet: cannot reach broker mqtt://h:1883: connect ECONNREFUSED …`.
 *
 * @example
 * ```ts
 * const host = await FleetHost.connect("mqtt://127.0.0.1:1883", { clientId: "cohesix-host-1" });
 * host.onMessage((topic, payload, retained) => console.log(topic, retained));
 * await host.subscribe(["cohesix/+/birth"]);
 * await host.close();
 * ```
 * @module
 */
import { randomBytes } from "node:crypto";
import { ClosedError, InvalidError, PermissionError, type NineError } from "../nine-door/index.ts";
import { MAX_RECORD_BYTES } from "./records.ts";

/** Options of {@link FleetHost.connect}. */
export interface FleetHostOptions {
  /** MQTT client id (default `cohesix-host-<random>`). */
  readonly clientId?: string;
  readonly username?: string;
  readonly password?: string;
  /** PEM CA to pin for `mqtts://`: only it is trusted. */
  readonly ca?: string | Uint8Array;
  readonly cert?: string | Uint8Array;
  readonly key?: string | Uint8Array;
  /** Give up the first connection after this long (default 10 s). */
  readonly connectTimeoutMs?: number;
  /** Reconnect after the first connection is lost (for long-running verbs like tail); default false. */
  readonly reconnect?: boolean;
}

/** A message as received: topic, bytes and whether the broker sent it as retained. */
export type HostMessageListener = (topic: string, payload: Buffer, retained: boolean) => void;

interface MqttJsClient {
  on(event: string, listener: (...args: never[]) => void): unknown;
  once(event: string, listener: (...args: never[]) => void): unknown;
  removeListener(event: string, listener: (...args: never[]) => void): unknown;
  subscribe(topics: string[], options: { qos: 1 }, callback: (err: Error | null, granted?: { topic: string; qos: number }[]) => void): unknown;
  unsubscribe(topics: string[], callback: (err?: Error) => void): unknown;
  publish(topic: string, payload: Buffer, options: { qos: 1; retain: boolean }, callback: (err?: Error) => void): unknown;
  end(force: boolean, options: object, callback: () => void): unknown;
  readonly connected: boolean;
}

/**
 * One host connection to the broker.
 *
 * @example
 * ```ts
 * const host = await FleetHost.connect(url, { ca: await readFile("ca.pem"), username: "ops", password });
 * ```
 */
export class FleetHost {
  readonly url: string;
  readonly #client: MqttJsClient;
  readonly #listeners = new Set<HostMessageListener>();
  #closed = false;

  private constructor(url: string, client: MqttJsClient) {
    this.url = url;
    this.#client = client;
    client.on("message", ((topic: string, payload: Buffer, packet: { retain?: boolean }) => {
      for (const l of this.#listeners) l(topic, payload, packet.retain === true);
    }) as (...args: never[]) => void);
  }

  /**
   * Connects (MQTT 3.1.1, clean session) and resolves once the broker
   * accepted the connection; rejects with one typed error otherwise.
   *
   * @example
   * ```ts
   * const host = await FleetHost.connect("mqtts://broker:8883", { ca });
   * ```
   */
  static async connect(url: string, options: FleetHostOptions = {}): Promise<FleetHost> {
    if (!/^mqtts?:\/\/[^/]+$/.test(url)) throw new InvalidError(`fleet: broker URL ${JSON.stringify(url.slice(0, 200))} must be mqtt://HOST:PORT or mqtts://HOST:PORT`);
    const { connect } = await import("mqtt");
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    const client = connect(url, {
      clientId: options.clientId ?? `cohesix-host-${randomBytes(6).toString("hex")}`,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: timeoutMs,
      keepalive: 30,
      resubscribe: true,
      queueQoSZero: false,
      writeCache: false,
      ...(options.username !== undefined ? { username: options.username } : {}),
      ...(options.password !== undefined ? { password: options.password } : {}),
      ...(options.ca !== undefined ? { ca: pem(options.ca), rejectUnauthorized: true } : {}),
      ...(options.cert !== undefined ? { cert: pem(options.cert) } : {}),
      ...(options.key !== undefined ? { key: pem(options.key) } : {}),
    }) as unknown as MqttJsClient & { options: { reconnectPeriod: number } };
    await new Promise<void>((resolve, reject) => {
      let lastError: Error | undefined;
      const timer = setTimeout(() => done(new ClosedError(`fleet: broker ${url} did not accept a connection within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs + 1000);
      const onError = (err: Error) => {
        lastError = err;
        // A refused login ends the attempt at once; a socket error is followed by close.
        if (typeof (err as { code?: unknown }).code === "number") done(explain(url, err, options));
      };
      const onClose = () => done(explain(url, lastError ?? new Error("the connection closed before the broker accepted it"), options));
      const onConnect = () => done();
      function done(err?: NineError): void {
        clearTimeout(timer);
        client.removeListener("error", onError as (...args: never[]) => void);
        client.removeListener("close", onClose);
        client.removeListener("connect", onConnect);
        if (err) {
          client.on("error", () => {});
          client.end(true, {}, () => {});
          reject(err);
        } else resolve();
      }
      client.on("error", onError as (...args: never[]) => void);
      client.on("close", onClose);
      client.on("connect", onConnect);
    });
    client.on("error", () => {});
    if (options.reconnect) client.options.reconnectPeriod = 1000;
    return new FleetHost(url, client);
  }

  /**
   * Calls `listener` for every message received (retained ones first,
   * as the broker sends them). Returns a function that removes it.
   *
   * @example
   * ```ts
   * const off = host.onMessage((topic, payload, retained) => view.add(topic, payload));
   * ```
   */
  onMessage(listener: HostMessageListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Subscribes at QoS 1; resolves on SUBACK, rejects if the broker refused a filter.
   *
   * @example
   * ```ts
   * await host.subscribe(["cohesix/+/birth", "cohesix/+/death"]);
   * ```
   */
  subscribe(filters: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#client.subscribe(filters, { qos: 1 }, (err, granted) => {
        if (err) return reject(new ClosedError(`fleet: subscribing at ${this.url} failed: ${err.message}`));
        const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
        if (refused.length > 0) return reject(new PermissionError(`fleet: broker ${this.url} refused the subscription to ${refused.join(", ")}: check the account's ACL`));
        resolve();
      });
    });
  }

  /**
   * Publishes at QoS 1 and resolves on PUBACK.
   *
   * @example
   * ```ts
   * await host.publish("cohesix/app-1/cmd", Buffer.from(envelope));
   * ```
   */
  publish(topic: string, payload: Uint8Array, options: { retain?: boolean } = {}): Promise<void> {
    if (payload.length > MAX_RECORD_BYTES) return Promise.reject(new InvalidError(`fleet: a message of ${payload.length} bytes exceeds ${MAX_RECORD_BYTES}`));
    return new Promise((resolve, reject) => {
      this.#client.publish(topic, Buffer.from(payload), { qos: 1, retain: options.retain ?? false }, (err) =>
        err ? reject(new ClosedError(`fleet: publishing to ${topic} at ${this.url} failed: ${err.message}`)) : resolve(),
      );
    });
  }

  /**
   * Ends the connection cleanly (pending PUBACKs are waited for at most 2 s).
   *
   * @example
   * ```ts
   * await host.close();
   * ```
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.#client.end(true, {}, resolve), 2000);
      timer.unref();
      this.#client.end(false, {}, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** One error a user can act on, from what MQTT.js reported. */
function explain(url: string, err: Error, options: FleetHostOptions): NineError {
  const code = (err as { code?: unknown }).code;
  if (typeof code === "number") {
    const what = err.message.replace(/^Connection refused:\s*/i, "");
    const hint = code === 4 || code === 5 ? ": check --username and the password" : "";
    return new PermissionError(`fleet: broker ${url} refused the login: ${what}${hint}`);
  }
  if (typeof code === "string" && TLS_CODES.has(code)) {
    const pinned = options.ca !== undefined ? "the pinned CA (--ca)" : "the system's CAs (pin the broker's CA with --ca)";
    return new PermissionError(`fleet: broker ${url}: its TLS certificate does not verify against ${pinned}: ${err.message}`);
  }
  if (/certificate|SSL|TLS/i.test(err.message)) return new PermissionError(`fleet: broker ${url}: TLS failed: ${err.message}`);
  return new ClosedError(`fleet: cannot reach broker ${url}: ${err.message}`);
}

const TLS_CODES = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "CERT_SIGNATURE_FAILURE",
]);

function pem(value: string | Uint8Array): string | Buffer {
  return typeof value === "string" ? value : Buffer.from(value);
}
