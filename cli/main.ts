/**
 * `cohesix`: the host command. Dispatches to one function per command and
 * maps failures to exit codes: 0 success, 1 a 9P or runtime error printed
 * as one `class: message` line, 2 a usage error.
 * @module
 */
import { NineError } from "../nine-door/index.ts";
import { UsageError } from "./args.ts";
import { fetch } from "./fetch.ts";
import { consoleCommand, flash } from "./flash.ts";
import { gpuBridge } from "./gpu-bridge.ts";
import { image } from "./image.ts";
import { keygen, serve, ticket } from "./local.ts";
import { log } from "./log.ts";
import { newCommand, testCommand } from "./project.ts";
import { cat, ctl, ls, stat, tail, write } from "./remote.ts";
import { status } from "./status.ts";
import { boot, build, down, up, vm } from "./vm.ts";
import { kill, logs, spawn } from "./workers.ts";

/** Where a command writes; tests pass their own. */
export interface Io {
  readonly out: (text: string | Uint8Array) => void;
  readonly err: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
  /** Aborts long-running commands (serve, tail -f). */
  readonly signal?: AbortSignal;
}

type Command = (argv: readonly string[], io: Io) => Promise<void>;

const commands: Record<string, { run: Command; usage: string }> = {
  new: { run: (a, io) => newCommand(a, io), usage: "new DIR [--name NAME] [--cohesix SPEC] (an appliance project of your own)" },
  test: { run: (a, io) => testCommand(a, io), usage: "test [--project DIR] (the project's test/**/*.test.ts under node --test)" },
  keygen: { run: (a, io) => keygen(a, io.env, io.out), usage: "keygen [--release] [--out DIR] [--force]" },
  serve: { run: (a, io) => serve(a, io), usage: "serve --board host --listen HOST:PORT --state DIR [--project DIR] [--queen-pub FILE] [--policy open|signed-ctl] [--tls-key FILE --tls-cert FILE] [--gpu-bridge DIAL [--gpu-bridge-key FILE] [--gpu-bridge-pin SHA256]]" },
  ticket: { run: (a, io) => ticket(a, io.env, io.out), usage: "ticket --role queen [--key FILE] [--ttl SECONDS]" },
  ls: { run: (a, io) => ls(a, io.env, io.out), usage: "ls [-l] [PATH] [--addr DIAL] [--key FILE]" },
  cat: { run: (a, io) => cat(a, io.env, io.out), usage: "cat PATH... [--addr DIAL] [--key FILE]" },
  tail: { run: (a, io) => tail(a, io.env, io.out, io.signal), usage: "tail [-f] [-n N] PATH [--addr DIAL] [--key FILE]" },
  write: { run: (a, io) => write(a, io.env, io.out), usage: "write PATH TEXT [--addr DIAL] [--key FILE]" },
  stat: { run: (a, io) => stat(a, io.env, io.out), usage: "stat PATH [--addr DIAL] [--key FILE]" },
  ctl: { run: (a, io) => ctl(a, io.env, io.out), usage: "ctl JSON [--addr DIAL] [--key FILE] [--unsigned]" },
  spawn: { run: (a, io) => spawn(a, io.env, io.out), usage: "spawn NAME [--ticks N] [--ttl S] [--ops N] [--lease GPU_ID:mem=MiB[,streams=N][,ttl=S][,priority=N]] [--restart] [--addr DIAL] [--key FILE]" },
  kill: { run: (a, io) => kill(a, io.env, io.out), usage: "kill WORKER [--addr DIAL] [--key FILE]" },
  logs: { run: (a, io) => logs(a, io.env, io.out, io.signal), usage: "logs WORKER [-f] [--addr DIAL] [--key FILE]" },
  status: { run: (a, io) => status(a, io.env, io.out), usage: "status [--json] [--key FILE] [--timeout S]" },
  log: { run: (a, io) => log(a, io.out), usage: "log verify|show DIR [--boot-key FILE] [--from N] [--limit N] [--kind KIND]" },
  fetch: { run: (a, io) => fetch(a, io), usage: "fetch [--board aarch64-virt] [--from DIR] [--offline]" },
  build: { run: (a, io) => build(a, io), usage: "build [--board aarch64-virt] [--project DIR] [--queen-pub FILE] [--out DIR] [--extra SRC:DEST]... [--worker KIND]... (adds to heartbeat, gpu; e.g. inference) [--dir DIR]" },
  boot: { run: (a, io) => boot(a, io), usage: "boot [--board aarch64-virt] [--disk FILE] [--detach] [--restore NAME] [--port N] [--append K=V]... [--rtc-base DATE|utc] [--rtc-clock host|vm|rt] [--gpu-bridge DIAL [--gpu-bridge-key FILE] [--gpu-bridge-pin SHA256] [--gpu-bridge-ttl SECONDS]] [--dir DIR] (and build's options)" },
  up: { run: (a, io) => up(a, io), usage: "up [--board aarch64-virt|host] [--project DIR] [--detach] [--worker KIND]... [--gpu-bridge DIAL] (build + boot, and their options; --board host serves without a VM)" },
  down: { run: (a, io) => down(a, io), usage: "down [--board aarch64-virt] [--dir DIR]" },
  vm: { run: (a, io) => vm(a, io), usage: "vm pause|resume|snapshot NAME|restore NAME [--board aarch64-virt] [--dir DIR]" },
  "gpu-bridge": { run: (a, io) => gpuBridge(a, io), usage: "gpu-bridge --listen HOST:PORT [--backend auto|nvml|sim] [--key FILE] [--tls-key FILE --tls-cert FILE] [--executor CMD]" },
  image: { run: (a, io) => image(a, io), usage: "image --board B --out FILE [--key FILE] [--queen-pub FILE] [--data-mb N] [--extra SRC:DEST]... | image verify FILE [--pub FILE]" },
  flash: { run: (a, io) => flash(a, io), usage: "flash FILE [--device DEV] [--yes] [--unmount] [--target-file PATH] [--pub FILE] [--max-size SIZE] | flash --list" },
  console: { run: (a, io) => consoleCommand(a, io), usage: "console --port DEV [--baud 115200] [--log FILE] [--expect TEXT [--timeout S]]" },
};

/** The usage text. */
export function usage(): string {
  return ["usage: cohesix COMMAND [OPTIONS]", "", ...Object.values(commands).map((c) => `  cohesix ${c.usage}`), ""].join("\n");
}

/**
 * Runs one command line; resolves with the exit code.
 *
 * @example
 * ```ts
 * const code = await main(["ls", "/"], { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t), env: process.env });
 * ```
 */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    io.out(usage());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    io.err(`cohesix: unknown command ${JSON.stringify(name)}\n${usage()}`);
    return 2;
  }
  try {
    await command.run(rest, io);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`cohesix ${name}: ${err.message}\nusage: cohesix ${command.usage}\n`);
      return 2;
    }
    if (err instanceof NineError) {
      io.err(`${err.message}\n`);
      return 1;
    }
    const message = err instanceof Error ? err.message : String(err);
    io.err(`io: ${message}\n`);
    return 1;
  }
}
