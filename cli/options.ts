/**
 * Option declarations that several verbs share: the remote ones (`--addr`,
 * `--key` …), `build`'s, `boot`'s and the GPU bridge's. Kept free of heavy
 * imports: the verb table loads this on every invocation.
 * @module
 */
import type { OptionDecl } from "./verb.ts";

type Options = Readonly<Record<string, OptionDecl>>;

/** Every verb that talks to a running appliance over 9P takes these. */
export const REMOTE_OPTIONS: Options = {
  addr: { type: "string", value: "DIAL", help: "the appliance: tcp!HOST!PORT, unix!/PATH, tls!HOST!PORT or HOST:PORT", env: "COHESIX_ADDR", defaultNote: "the one VM or host board this folder runs" },
  key: { type: "string", value: "FILE", help: "the queen private key the CLI mints a short-lived ticket from", env: "COHESIX_KEY", defaultNote: "~/.config/cohesix/queen.key" },
  dialect: { type: "string", value: "DIALECT", help: "the 9P dialect", choices: ["9P2000", "9P2000.L"], default: "9P2000" },
  pin: { type: "string", value: "SHA256", help: "for a tls! address: the server certificate's fingerprint", env: "COHESIX_PIN" },
  timeout: { type: "string", value: "S", help: "seconds to wait for the appliance to answer (0 waits forever)", env: "COHESIX_TIMEOUT", defaultNote: "10" },
};

/** `boot` and `up`: have the guest mount the host's GPU bridge at /gpu. */
export const GPU_BRIDGE_OPTIONS: Options = {
  "gpu-bridge": { type: "string", value: "DIAL", help: "the host's GPU bridge, mounted at /gpu (a 127.0.0.1 address becomes 10.0.2.2 for a guest)" },
  "gpu-bridge-key": { type: "string", value: "FILE", help: "the bridge key that mints the guest's ticket", defaultNote: "~/.config/cohesix/bridge.key" },
  "gpu-bridge-pin": { type: "string", value: "SHA256", help: "the bridge's TLS certificate fingerprint" },
  "gpu-bridge-ttl": { type: "string", value: "S", help: "lifetime of the guest's bridge ticket in seconds", defaultNote: "86400" },
};

/** `serve`, `boot` and `up`: the appliance's fleet link (docs/fleet.md). */
export const FLEET_OPTIONS: Options = {
  fleet: { type: "string", value: "URL", help: "publish to this MQTT broker and take signed commands from it, mqtt://HOST:PORT or mqtts://HOST:PORT (a 127.0.0.1 address becomes 10.0.2.2 for a guest)", defaultNote: "the project's fleet block" },
  "fleet-id": { type: "string", value: "ID", help: "the appliance id on the broker", defaultNote: "the fleet block's, else cx-<boot key id>" },
};

/** `build` (and `boot`, `up`, which build first). */
export const BUILD_OPTIONS: Options = {
  board: { type: "string", value: "BOARD", help: "the board to build for", defaultNote: "the project's board, else aarch64-virt" },
  project: { type: "string", value: "DIR", help: "an appliance project other than the current folder's" },
  "queen-pub": { type: "string", value: "FILE", help: "the queen public key baked into the image", defaultNote: "the project's, else ~/.config/cohesix/queen.pub, made on first use" },
  out: { type: "string", value: "DIR", help: "where the image goes", defaultNote: "DIR/image/BOARD" },
  dir: { type: "string", value: "DIR", help: "the working folder: image, cache, run and vm state", defaultNote: ".cohesix" },
  extra: { type: "string", multiple: true, value: "SRC:/DEST", help: "a host file placed in the image" },
  worker: { type: "string", multiple: true, value: "KIND", help: "a worker added to heartbeat and gpu, e.g. inference" },
  policy: { type: "string", value: "POLICY", help: "how /queen/ctl takes commands", choices: ["open", "signed-ctl"], defaultNote: "the project's, else open" },
  from: { type: "string", value: "DIR", help: "take the pinned artefacts from DIR instead of downloading them" },
  offline: { type: "boolean", help: "use only the per-user cache; never download" },
};

/** `boot` and `up`. */
export const BOOT_OPTIONS: Options = {
  ...BUILD_OPTIONS,
  detach: { type: "boolean", help: "return once the appliance serves and leave it running (cohesix down stops it)" },
  restore: { type: "string", value: "NAME", help: "boot from a snapshot (cohesix vm snapshot NAME)" },
  port: { type: "string", value: "N", help: "the host port that forwards to the guest's 9P port", min: 0, defaultNote: "the project's, else 5640 or a free one" },
  append: { type: "string", multiple: true, value: "K=V", help: "added to the kernel command line" },
  timeout: { type: "string", value: "S", help: "seconds to wait for the guest to serve", default: "180" },
  disk: { type: "string", value: "FILE", help: "boot a flashed disk image through the board's firmware instead of building" },
  "rtc-base": { type: "string", value: "DATE", help: "start the guest's RTC at DATE (2030-01-01[T12:00:00], UTC) or utc" },
  "rtc-clock": { type: "string", value: "CLOCK", help: "what drives the guest's RTC: host, vm or rt", defaultNote: "host" },
  listen: { type: "string", value: "HOST:PORT", help: "with --board host: where to serve", defaultNote: "the project's, else 127.0.0.1:5640" },
  state: { type: "string", value: "DIR", help: "with --board host: the appliance's state folder", defaultNote: "DIR/state" },
  ...GPU_BRIDGE_OPTIONS,
  ...FLEET_OPTIONS,
};

/** `fleet` verbs: the broker and how to log in to it. */
export const BROKER_OPTIONS: Options = {
  broker: { type: "string", value: "URL", help: "the broker, mqtt://HOST:PORT or mqtts://HOST:PORT", env: "COHESIX_BROKER", defaultNote: "the fleet block of cohesix.config.json" },
  prefix: { type: "string", value: "PREFIX", help: "the topic prefix", defaultNote: "the fleet block's, else cohesix" },
  ca: { type: "string", value: "FILE", help: "for mqtts://: the CA (PEM) the broker's certificate must chain to; only it is trusted" },
  username: { type: "string", value: "USER", help: "the broker login", env: "COHESIX_BROKER_USER" },
  "password-file": { type: "string", value: "FILE", help: "a file holding the broker password (or set COHESIX_BROKER_PASSWORD)" },
  "client-cert": { type: "string", value: "FILE", help: "a client certificate (PEM) for brokers that ask for one" },
  "client-key": { type: "string", value: "FILE", help: "its private key (PEM)" },
  project: { type: "string", value: "DIR", help: "the project whose fleet block to read", defaultNote: "the current folder" },
};

/** `fleet` verbs: which appliances. */
export const SELECT_OPTIONS: Options = {
  id: { type: "string", value: "ID", help: "one appliance" },
  select: { type: "string", multiple: true, value: "K=V", help: "appliances whose birth says K=V (id, version, lifecycle, live or a /proc/boot key); repeat to narrow" },
  "max-appliances": { type: "string", value: "N", help: "track at most N appliances (anything on the broker is untrusted)", min: 1, default: "100000" },
};
