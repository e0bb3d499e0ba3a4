/**
 * Requests pipelined behind the walk that creates their fid, sent in the
 * same TCP segment (one socket.write of concatenated frames), wait for the
 * walk instead of failing with "fid N not in use" (docs/architecture.md,
 * "Requests in flight"). Raw frames, both dialects.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeMessage, type Dialect, type Message, type RMessage } from "../../../nine-door/index.ts";
import { RawConn, startServer, type TestServer } from "../harness.ts";

let srv: TestServer;
beforeAll(async () => {
  srv = await startServer();
});
afterAll(async () => {
  await srv.close();
});

type Follow = { name: string; msg: (fid: number) => Omit<Message, "tag">; reply: RMessage["type"] };

function followUps(dialect: Dialect): Follow[] {
  const l = dialect === "9P2000.L";
  return [
    l
      ? { name: "Tlopen", msg: (fid) => ({ type: "Tlopen", fid, flags: 0 }) as Omit<Message, "tag">, reply: "Rlopen" }
      : { name: "Topen", msg: (fid) => ({ type: "Topen", fid, mode: 0 }) as Omit<Message, "tag">, reply: "Ropen" },
    { name: "Tclunk", msg: (fid) => ({ type: "Tclunk", fid }) as Omit<Message, "tag">, reply: "Rclunk" },
    l
      ? { name: "Tgetattr", msg: (fid) => ({ type: "Tgetattr", fid, requestMask: 0x7ff }) as Omit<Message, "tag">, reply: "Rgetattr" }
      : { name: "Tstat", msg: (fid) => ({ type: "Tstat", fid }) as Omit<Message, "tag">, reply: "Rstat" },
    { name: "Twalk", msg: (fid) => ({ type: "Twalk", fid, newfid: fid + 1000, names: [] }) as Omit<Message, "tag">, reply: "Rwalk" },
  ];
}

describe.each(["9P2000", "9P2000.L"] as const)("%s pipelined fids", (dialect) => {
  for (const follow of followUps(dialect)) {
    it(`serves a ${follow.name} sent in the same segment as the Twalk that binds its fid`, async () => {
      const c = await RawConn.ready(srv.port, dialect);
      try {
        for (let round = 0; round < 3; round++) {
          const fid = 10 + round;
          const walkTag = 100 + round * 2;
          const nextTag = walkTag + 1;
          const bytes = Buffer.concat([
            encodeMessage({ type: "Twalk", tag: walkTag, fid: 0, newfid: fid, names: ["a", "b", "c"] } as Message),
            encodeMessage({ ...follow.msg(fid), tag: nextTag } as Message),
          ]);
          c.sendRaw(bytes);
          expect(await c.reply(walkTag)).toMatchObject({ type: "Rwalk" });
          expect(await c.reply(nextTag)).toMatchObject({ type: follow.reply });
        }
      } finally {
        c.close();
      }
    });
  }

  it("serves a chain walk → walk → open → read → clunk written at once", async () => {
    const c = await RawConn.ready(srv.port, dialect);
    try {
      const open = dialect === "9P2000" ? { type: "Topen", fid: 2, mode: 0 } : { type: "Tlopen", fid: 2, flags: 0 };
      const frames = [
        { type: "Twalk", tag: 1, fid: 0, newfid: 1, names: ["a"] },
        { type: "Twalk", tag: 2, fid: 1, newfid: 2, names: ["b", "c"] },
        { ...open, tag: 3 },
        { type: "Tread", tag: 4, fid: 2, offset: 0, count: 100 },
        { type: "Tclunk", tag: 5, fid: 2 },
        { type: "Tclunk", tag: 6, fid: 1 },
      ];
      c.sendRaw(Buffer.concat(frames.map((f) => encodeMessage(f as Message))));
      const read = await c.reply(4);
      expect(read.type).toBe("Rread");
      expect(Buffer.from((read as Extract<RMessage, { type: "Rread" }>).data).toString()).toBe("deep\n");
      for (const tag of [1, 2, 3, 5, 6]) expect((await c.reply(tag)).type).toMatch(/^R(walk|open|lopen|clunk)$/);
    } finally {
      c.close();
    }
  });

  it("still answers not found: to a request behind a walk that fails to bind its fid", async () => {
    const c = await RawConn.ready(srv.port, dialect);
    try {
      c.sendRaw(
        Buffer.concat([
          encodeMessage({ type: "Twalk", tag: 1, fid: 0, newfid: 7, names: ["nope"] } as Message),
          encodeMessage({ type: "Tclunk", tag: 2, fid: 7 } as Message),
        ]),
      );
      expect((await c.reply(1)).type).toMatch(/^R(l)?error$/);
      expect((await c.reply(2)).type).toMatch(/^R(l)?error$/);
    } finally {
      c.close();
    }
  });
});
