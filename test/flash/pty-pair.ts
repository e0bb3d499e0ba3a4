/**
 * A pty pair from socat (`pty,raw,echo=0` twice): bytes written to one end
 * come out of the other, like a board's UART and the host's serial port.
 * Each end also gets a symlink in a temp dir, so a test can name a port
 * before it exists. socat is stopped by PID.
 */
import { execa, type ResultPromise } from "execa";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SerialPort } from "serialport";

/** A running pty pair. */
export interface PtyPair {
  /** The "board" end, e.g. /dev/pts/3. */
  readonly board: string;
  /** The "host" end a console opens, e.g. /dev/pts/4. */
  readonly host: string;
  readonly pid: number;
  /** Stops socat by PID and waits for it. */
  stop(): Promise<void>;
}

/** Starts socat; with `links`, the ends are also `links.board` and `links.host`. */
export async function startPtyPair(links?: { board: string; host: string }): Promise<PtyPair> {
  const end = (link?: string) => `pty,raw,echo=0${link ? `,link=${link}` : ""}`;
  const child: ResultPromise = execa("socat", ["-d", "-d", end(links?.board), end(links?.host)], { reject: false, stdin: "ignore", stdout: "ignore" });
  const names: string[] = [];
  await new Promise<void>((resolve, reject) => {
    let text = "";
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      for (const m of text.matchAll(/PTY is (\/dev\/pts\/\d+)/g)) if (!names.includes(m[1]!)) names.push(m[1]!);
      if (names.length === 2 && /starting data transfer loop/.test(text)) {
        child.stderr!.off("data", onData);
        child.stderr!.resume();
        resolve();
      }
    };
    child.stderr!.on("data", onData);
    void child.then((r) => reject(new Error(`socat exited early: ${r.stderr || r.exitCode}`)));
  });
  return {
    board: names[0]!,
    host: names[1]!,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, "SIGTERM");
      await child;
    },
  };
}

/** The board's end of the wire, open: what it writes reaches the console; what the console sends is collected. */
export interface BoardEnd {
  write(text: string): Promise<void>;
  /** All the console sent so far (latin1). */
  received(): string;
  /** Closes the port if it is still open. */
  close(): Promise<void>;
}

/** Opens `path` (a pair's board end) through serialport at 115200 baud. */
export async function openBoardEnd(path: string): Promise<BoardEnd> {
  const sp = await new Promise<SerialPort>((resolve, reject) => {
    const s = new SerialPort({ path, baudRate: 115200, autoOpen: false });
    s.open((err) => (err ? reject(err) : resolve(s)));
  });
  let got = "";
  sp.on("data", (b: Buffer) => (got += b.toString("latin1")));
  sp.on("error", () => {});
  return {
    write: (text) => new Promise((resolve, reject) => sp.write(text, (err) => (err ? reject(err) : sp.drain(() => resolve())))),
    received: () => got,
    close: () => new Promise<void>((r) => (sp.isOpen ? sp.close(() => r()) : r())),
  };
}

/** A temp dir for symlinked ports and logs. */
export async function tempDir(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "cohesix-console-"));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
