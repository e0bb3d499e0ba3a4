/**
 * The serial console against real ptys (a socat pair: one end plays the
 * board, the console opens the other through serialport): the expected
 * text is found across chunk boundaries, output that arrived before the
 * console opened is kept, keys are forwarded and Ctrl-] ends the session,
 * a terminal is put in raw mode and restored, the log file is appended,
 * and a timeout, a missing port and a port that goes away are errors.
 */
import { PassThrough } from "node:stream";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConsoleError, ESCAPE_BYTE, StreamMatcher, runConsole, type ConsoleInput } from "../../flash/index.ts";
import { openBoardEnd, startPtyPair, tempDir, type BoardEnd, type PtyPair } from "./pty-pair.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function pair(links?: { board: string; host: string }): Promise<PtyPair> {
  const p = await startPtyPair(links);
  cleanups.push(() => p.stop());
  return p;
}

/** The board's end of the wire: what it writes reaches the console; what the console sends is collected. */
async function board(path: string): Promise<BoardEnd> {
  const end = await openBoardEnd(path);
  cleanups.push(() => end.close());
  return end;
}

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A notice callback and a promise that settles when the console says the port is open. */
function opened(): { notice: (t: string) => void; ready: Promise<void> } {
  let notice: (t: string) => void = () => {};
  const ready = new Promise<void>((resolve) => (notice = () => resolve()));
  return { notice: (t) => notice(t), ready };
}

function collector(): { output: (b: Uint8Array) => void; text: () => string } {
  const parts: Buffer[] = [];
  return { output: (b) => parts.push(Buffer.from(b)), text: () => Buffer.concat(parts).toString("latin1") };
}

describe("StreamMatcher", () => {
  it("finds the text however the stream is split (seeded random splits)", () => {
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const stream = Buffer.from("U-Boot 2023.01\r\nStarting kernel ...\r\n[    1.2] Run /init\r\nnode: READY nine-door on 0.0.0.0:564\r\n");
    const at = stream.indexOf("READY");
    for (let trial = 0; trial < 500; trial++) {
      const m = new StreamMatcher("READY");
      let pos = 0;
      let foundAt = -1;
      while (pos < stream.length) {
        const n = 1 + rand(12);
        const chunk = stream.subarray(pos, pos + n);
        pos += chunk.length;
        if (m.push(chunk)) {
          foundAt = pos;
          break;
        }
      }
      // Found in the chunk holding the last byte of READY, not before, not after.
      expect(foundAt).toBeGreaterThanOrEqual(at + 5);
      expect(foundAt - at - 5).toBeLessThan(12);
    }
  });

  it("finds a multi-byte UTF-8 text split inside a character, and not a text that never comes", () => {
    const m = new StreamMatcher("prêt ✓");
    const bytes = Buffer.from("… prêt ✓ …");
    expect(m.push(bytes.subarray(0, 6))).toBe(false);
    expect(m.push(bytes.subarray(6, 11))).toBe(false);
    expect(m.push(bytes.subarray(11))).toBe(true);
    const never = new StreamMatcher("READY");
    for (const c of ["REA", "D", "-Y", "READ"]) expect(never.push(Buffer.from(c))).toBe(false);
  });

  it("refuses an empty text", () => {
    expect(() => new StreamMatcher("")).toThrow(/invalid: the text to expect is empty/);
  });
});

describe("runConsole() on a pty", () => {
  it("ends as soon as the expected text arrives, split across writes, and logs everything", async () => {
    const p = await pair();
    const b = await board(p.board);
    const t = await tempDir();
    cleanups.push(t.remove);
    const log = join(t.dir, "console.log");
    const out = collector();
    const ready = opened();
    const session = runConsole({ port: p.host, expect: "READY", timeoutMs: 20_000, output: out.output, logFile: log, notice: ready.notice });
    await ready.ready;
    await b.write("booting\r\nRE");
    await delay(200);
    await b.write("ADY\r\n");
    const r = await session;
    expect(r.end).toBe("expected");
    expect(out.text()).toContain("booting\r\nREADY");
    expect(r.bytes).toBe(out.text().length);
    expect(await readFile(log, "latin1")).toBe(out.text());
  });

  it("keeps output that arrived before the console opened", async () => {
    const p = await pair();
    const b = await board(p.board);
    await b.write("early line\r\n");
    // Let socat queue it at the host end; serialport's open flushes that queue (tcflush), so only the
    // console's drain before opening keeps it. On a slow machine it may arrive after opening instead.
    await delay(200);
    const out = collector();
    const r = await runConsole({ port: p.host, expect: "early line", timeoutMs: 10_000, output: out.output });
    expect(r.end).toBe("expected");
    expect(out.text()).toBe("early line\r\n");
  });

  it("appends to the log file across sessions", async () => {
    const p = await pair();
    const b = await board(p.board);
    const t = await tempDir();
    cleanups.push(t.remove);
    const log = join(t.dir, "console.log");
    for (const word of ["one", "two"]) {
      const ready = opened();
      const session = runConsole({ port: p.host, expect: word, timeoutMs: 10_000, output: () => {}, logFile: log, notice: ready.notice });
      await ready.ready;
      await b.write(`${word}\n`);
      await session;
    }
    expect(await readFile(log, "utf8")).toBe("one\ntwo\n");
  });

  it("fails with a clear message when the text does not come in time", async () => {
    const p = await pair();
    const started = Date.now();
    const err = await runConsole({ port: p.host, expect: "NEVER", timeoutMs: 600, output: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConsoleError);
    expect((err as Error).message).toMatch(new RegExp(`^io: "NEVER" did not appear on ${p.host} within 1 s \\(0 bytes received\\)$`));
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
  });

  it("fails when the port goes away before the text comes", async () => {
    const p = await pair();
    const ready = opened();
    const session = runConsole({ port: p.host, expect: "READY", timeoutMs: 20_000, output: () => {}, notice: ready.notice }).catch((e: unknown) => e);
    await ready.ready;
    await p.stop();
    const err = await session;
    expect(err).toBeInstanceOf(ConsoleError);
    expect((err as Error).message).toMatch(new RegExp(`^closed: ${p.host} closed before "READY" appeared`));
  });

  it("waits for a port that does not exist yet when expecting (QEMU not started yet)", async () => {
    const t = await tempDir();
    cleanups.push(t.remove);
    const links = { board: join(t.dir, "board"), host: join(t.dir, "host") };
    const out = collector();
    const ready = opened();
    const session = runConsole({ port: links.host, expect: "READY", timeoutMs: 20_000, output: out.output, notice: ready.notice });
    await delay(500); // the console is retrying meanwhile; the test holds either way
    await pair(links);
    const b = await board(links.board);
    await ready.ready;
    await b.write("READY\n");
    expect((await session).end).toBe("expected");
  });

  it("refuses a port that does not exist, at once when not expecting", async () => {
    const err = await runConsole({ port: "/dev/ttyNOPE9", output: () => {}, input: new PassThrough() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConsoleError);
    expect((err as Error).message).toMatch(/^not found: \/dev\/ttyNOPE9: no such serial port/);
    const late = await runConsole({ port: "/dev/ttyNOPE9", expect: "X", timeoutMs: 300, output: () => {} }).catch((e: unknown) => e);
    expect((late as Error).message).toMatch(/^not found: /);
  });

  it("refuses a log file it cannot write before opening the port", async () => {
    const err = await runConsole({ port: "/dev/ttyNOPE9", logFile: "/nonexistent-dir/console.log", output: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConsoleError);
    expect((err as Error).message).toMatch(/^io: cannot open log file \/nonexistent-dir\/console\.log: ENOENT/);
  });

  it("forwards keys to the board and ends at Ctrl-], sending nothing after it", async () => {
    const p = await pair();
    const b = await board(p.board);
    const input = new PassThrough();
    const out = collector();
    const ready = opened();
    const session = runConsole({ port: p.host, input, output: out.output, notice: ready.notice });
    await ready.ready;
    input.write("ls /proc\r");
    await until(() => b.received() === "ls /proc\r", "the keys at the board");
    await b.write("boot lifecycle\r\n");
    await until(() => out.text().includes("lifecycle"), "the board's answer");
    input.write(Buffer.from([0x61, 0x62, ESCAPE_BYTE, 0x63]));
    const r = await session;
    expect(r.end).toBe("escape");
    await until(() => b.received() === "ls /proc\rab", "the keys before Ctrl-]");
    await delay(200); // and nothing after it
    expect(b.received()).toBe("ls /proc\rab");
  });

  it("puts a terminal in raw mode and restores it, and reads no keys from a pipe when expecting", async () => {
    const p = await pair();
    const b = await board(p.board);
    const modes: boolean[] = [];
    const keys = new PassThrough();
    const tty: ConsoleInput = Object.assign(keys, { isTTY: true, setRawMode: (m: boolean) => modes.push(m) });
    const ready = opened();
    const session = runConsole({ port: p.host, input: tty, output: () => {}, notice: ready.notice });
    await ready.ready;
    expect(modes).toEqual([true]);
    keys.write(Buffer.from([ESCAPE_BYTE]));
    expect((await session).end).toBe("escape");
    expect(modes).toEqual([true, false]);

    const pipe = new PassThrough();
    const ready2 = opened();
    const expecting = runConsole({ port: p.host, input: pipe, expect: "OK", timeoutMs: 10_000, output: () => {}, notice: ready2.notice });
    await ready2.ready;
    pipe.write("not forwarded");
    await b.write("OK\n");
    await expecting;
    await delay(100);
    expect(b.received()).toBe("");
  });

  it("ends when its signal aborts", async () => {
    const p = await pair();
    const ac = new AbortController();
    const ready = opened();
    const session = runConsole({ port: p.host, input: new PassThrough(), output: () => {}, signal: ac.signal, notice: ready.notice });
    await ready.ready;
    ac.abort();
    expect((await session).end).toBe("aborted");
  });
});
