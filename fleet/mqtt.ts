/**
 * The small part of an MQTT client the fleet link uses, and the adapter
 * that provides it with MQTT.js (npm `mqtt`, v5). The link owns durability
 * (its outbox), so it needs only connect, QoS 1 publish with a PUBACK
 * callback, and end; it never relies on the library's offline queue or
 * reconnect (MQTT.js keeps that queue in memory, and publishes queued
 * during a store replay can be lost when the connection falls again).
 *
 * MQTT.js is loaded when the first link connects (a dynamic import, which
 * a bundler still follows), so a program that never starts a link does
 * not pay for loading it.
 *
 * @example
 * ```ts
 * const client = await mqttJsConnect("mqtt://127.0.0.1:1883", { clientId: "cohesix-app-1", will });
 * client.on("connect", () => client.publish("t", payload, { qos: 1 }, (err) => console.log(err ?? "PUBACK")));
 * ```
 * @module
 */

/** A will registered with the connection: the death record. */
export interface MqttWill {
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly qos: 1;
  readonly retain: boolean;
}

/** Options the link passes to {@link MqttConnect}. */
export interface MqttConnectOptions {
  readonly clientId: string;
  readonly will: MqttWill;
  readonly username?: string;
  readonly password?: string;
  /** PEM CA bundle to pin for `mqtts://` (nothing else is trusted then). */
  readonly ca?: string | Uint8Array;
  /** PEM client certificate and key, for brokers that ask for one. */
  readonly cert?: string | Uint8Array;
  readonly key?: string | Uint8Array;
  readonly connectTimeoutMs: number;
  readonly keepaliveS: number;
}

/** One connection attempt's client: emits `connect`, `close`, `error`, and `message` once it subscribed. */
export interface MqttClientLike {
  on(event: "connect" | "close", listener: () => void): unknown;
  on(event: "error", listener: (err: Error) => void): unknown;
  on(event: "message", listener: (topic: string, payload: Buffer) => void): unknown;
  /** Subscribes at QoS 1 (only the links that take commands call it). */
  subscribe?(topic: string, options: { qos: 1 }, callback: (err: Error | null) => void): unknown;
  publish(topic: string, payload: Buffer, options: { qos: 1; retain: boolean }, callback: (err?: Error) => void): unknown;
  end(force: boolean, callback?: () => void): unknown;
  removeAllListeners(): unknown;
}

/** Makes one connection attempt (no automatic reconnect). */
export type MqttConnect = (url: string, options: MqttConnectOptions) => Promise<MqttClientLike>;


/**
 * {@link MqttConnect} with MQTT.js: MQTT 3.1.1, clean session, no library
 * reconnect, no offline queue for QoS 0, TLS verified against `ca` when set.
 *
 * @example
 * ```ts
 * const link = new FleetLink({ url, id, outbox, connect: mqttJsConnect });
 * ```
 */
export const mqttJsConnect: MqttConnect = async (url, options) => {
  const { connect } = await import("mqtt");
  const client: MqttClientLike = connect(url, {
    clientId: options.clientId,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    queueQoSZero: false,
    resubscribe: false,
    // mqtt-packet's cache of 65,536 two-byte Buffers costs ~12 MB of resident set; a link writes a few packets a second.
    writeCache: false,
    connectTimeout: options.connectTimeoutMs,
    keepalive: options.keepaliveS,
    will: { topic: options.will.topic, payload: Buffer.from(options.will.payload), qos: options.will.qos, retain: options.will.retain },
    ...(options.username !== undefined ? { username: options.username } : {}),
    ...(options.password !== undefined ? { password: options.password } : {}),
    ...(options.ca !== undefined ? { ca: pem(options.ca), rejectUnauthorized: true } : {}),
    ...(options.cert !== undefined ? { cert: pem(options.cert) } : {}),
    ...(options.key !== undefined ? { key: pem(options.key) } : {}),
  });
  return client;
};

function pem(value: string | Uint8Array): string | Buffer {
  return typeof value === "string" ? value : Buffer.from(value);
}
