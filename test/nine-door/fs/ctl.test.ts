import { describe, expect, it } from "vitest";
import { DirMode, QidType } from "../../../nine-door/wire/types.ts";
import { InvalidError, PermissionError, TooBigError } from "../../../nine-door/errors.ts";
import { CtlFile } from "../../../nine-door/fs/index.ts";
import { RDWR, READ, bytes, caught, ctx, runProviderConformance, text } from "./conformance.ts";

runProviderConformance("CtlFile", () => new CtlFile("ctl", (command) => `ok ${command}`));
runProviderConformance("asynchronous CtlFile", () => new CtlFile("ctl", async (command) => `ok ${command}`));

const echo = (): CtlFile =>
  new CtlFile("ctl", (command) => {
    if (command === "explode") throw new InvalidError("unknown command: explode");
    if (command === "crash") throw new Error("disk on fire");
    return `ok ${command}`;
  });

describe("CtlFile", () => {
  it("is append-only by mode and qid type", () => {
    const ctl = echo();
    expect((ctl.mode & DirMode.APPEND) >>> 0).toBe(DirMode.APPEND);
    expect(ctl.qid.type).toBe(QidType.APPEND);
  });

  it("runs one command per write with trailing newlines trimmed and reads the reply back", async () => {
    const seen: string[] = [];
    const ctl = new CtlFile("ctl", (command, c) => {
      seen.push(`${c.caller.subject}:${command}`);
      return `{"ok":true}`;
    });
    const f = await ctl.open(RDWR, ctx());
    expect(await f.write(99, bytes('{"kill":"worker-7"}\r\n'), ctx())).toBe(21);
    expect(seen).toEqual(['queen:{"kill":"worker-7"}']);
    expect(text(await f.read(0, 100, ctx()))).toBe('{"ok":true}\n');
    expect(text(await f.read(6, 100, ctx()))).toBe("true}\n");
    expect((await f.read(12, 100, ctx())).length).toBe(0);
  });

  it("keeps a reply per open file", async () => {
    const ctl = echo();
    const a = await ctl.open(RDWR, ctx());
    const b = await ctl.open(RDWR, ctx());
    await a.write(0, bytes("drain\n"), ctx());
    expect(text(await b.read(0, 100, ctx()))).toBe("");
    await b.write(0, bytes("resume"), ctx());
    expect(text(await a.read(0, 100, ctx()))).toBe("ok drain\n");
    expect(text(await b.read(0, 100, ctx()))).toBe("ok resume\n");
  });

  it("gives the writer the handler's error and leaves it as the reply line", async () => {
    const f = await echo().open(RDWR, ctx());
    const err = await caught(() => f.write(0, bytes("explode\n"), ctx()));
    expect(err).toBeInstanceOf(InvalidError);
    expect(text(await f.read(0, 100, ctx()))).toBe("invalid: unknown command: explode\n");
    expect(await caught(() => f.write(0, bytes("crash"), ctx()))).toBeInstanceOf(Error);
    expect(text(await f.read(0, 100, ctx()))).toBe("io: disk on fire\n");
  });

  it("refuses an empty command and an oversized one without calling the handler", async () => {
    let calls = 0;
    const ctl = new CtlFile("ctl", () => String(++calls), { maxWrite: 8 });
    const f = await ctl.open(RDWR, ctx());
    expect(await caught(() => f.write(0, bytes("\n"), ctx()))).toBeInstanceOf(InvalidError);
    expect(await caught(() => f.write(0, bytes("123456789"), ctx()))).toBeInstanceOf(TooBigError);
    expect(calls).toBe(0);
    expect(text(await f.read(0, 100, ctx()))).toMatch(/^too big: command of 9 bytes/);
  });

  it("makes a read wait for the fid's pending command", async () => {
    const ctl = new CtlFile("ctl", async (command) => {
      await new Promise((r) => setTimeout(r, 20));
      return `done ${command}`;
    });
    const f = await ctl.open(RDWR, ctx());
    const write = Promise.resolve(f.write(0, bytes("spawn"), ctx()));
    const reply = Promise.resolve(f.read(0, 100, ctx()));
    expect(text(await reply)).toBe("done spawn\n");
    expect(await write).toBe(5);
  });

  it("runs commands on one fid in arrival order", async () => {
    const order: string[] = [];
    const ctl = new CtlFile("ctl", async (command) => {
      await new Promise((r) => setTimeout(r, command === "slow" ? 20 : 0));
      order.push(command);
      return command;
    });
    const f = await ctl.open(RDWR, ctx());
    await Promise.all([f.write(0, bytes("slow"), ctx()), f.write(0, bytes("fast"), ctx())]);
    expect(order).toEqual(["slow", "fast"]);
    expect(text(await f.read(0, 100, ctx()))).toBe("fast\n");
  });

  it("bumps the version only for commands that succeed", async () => {
    const ctl = echo();
    const f = await ctl.open(RDWR, ctx());
    await f.write(0, bytes("a"), ctx());
    await caught(() => f.write(0, bytes("explode"), ctx()));
    expect(ctl.qid.version).toBe(1);
  });

  it("refuses a write on a fid opened only for reading", async () => {
    const f = await echo().open(READ, ctx());
    expect(await caught(() => f.write(0, bytes("x"), ctx()))).toBeInstanceOf(PermissionError);
  });
});
