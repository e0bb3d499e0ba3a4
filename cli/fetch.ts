/**
 * `cohesix fetch`: gets a board's pinned artefacts into the per-user cache.
 * @module
 */
import { resolve } from "node:path";
import { loadBoard } from "../boards/index.ts";
import { fetchArtefacts, fetchNatives } from "../rootfs/index.ts";
import { str, type Parsed } from "./args.ts";
import { progressOf } from "./progress.ts";
import type { Io } from "./verb.ts";

/**
 * `fetch [--board aarch64-virt] [--from DIR] [--offline]`:
 * downloads (or takes from DIR), verifies and unpacks the board's
 * artefacts (and its pinned native addon packages) into `$XDG_CACHE_HOME/cohesix` (default `~/.cache/cohesix`), printing progress on stderr when it is a terminal, a one-line summary there, and the unpacked paths on stdout.
 *
 * @example
 * ```ts
 * await fetch({ values: { board: "aarch64-virt", offline: true }, positionals: [] }, { env: process.env, out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) });
 * ```
 */
export async function fetch(p: Parsed, io: Io): Promise<void> {
  const board = loadBoard(str(p, "board", "aarch64-virt")!);
  const from = str(p, "from");
  const started = Date.now();
  const progress = progressOf(io);
  const options = {
    env: io.env,
    offline: p.values.offline === true,
    // Steps on a terminal's status line only; the summary always.
    onProgress: (line: string) => progress.step(line),
    ...(from === undefined ? {} : { from: resolve(from) }),
  };
  let a: Awaited<ReturnType<typeof fetchArtefacts>>;
  let natives: Awaited<ReturnType<typeof fetchNatives>>;
  try {
    a = await fetchArtefacts(board, options);
    // Native addons for opt-in workers (sharp for `--worker inference`), so such images build offline too.
    natives = await fetchNatives(board, options);
    progress.note(`fetch: ${board.name} ready in ${((Date.now() - started) / 1000).toFixed(1)} s (cache ${a.cacheDir})`);
  } finally {
    progress.end();
  }
  io.out(
    [
      `node ${a.node}`,
      `sysroot ${a.sysroot}`,
      `busybox ${a.busybox}`,
      `kernel ${a.kernel}`,
      `modules ${a.modules}`,
      `kernel-version ${a.kernelVersion}`,
      ...natives.map((n) => `native ${n.pin.package}@${n.pin.version} ${n.dir}`),
      "",
    ].join("\n"),
  );
}
