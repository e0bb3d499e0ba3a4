import { describe, expect, test } from "vitest";
import { parseQueenCommand, queenCommandOf } from "../../root-task/index.ts";
import { generateKeyPair } from "../../root-task/keys.ts";
import { openParsedEnvelope, signEnvelope } from "../../root-task/signed-ctl.ts";

describe("a command parsed once", () => {
  test("queenCommandOf applies parseQueenCommand's rules to a value already parsed", () => {
    expect(queenCommandOf({ kill: "worker-2" })).toEqual(parseQueenCommand('{"kill":"worker-2"}'));
    expect(() => queenCommandOf({ kill: "worker-2", colour: 1 })).toThrow('invalid: unknown field "colour" in kill');
    expect(() => queenCommandOf([1])).toThrow(/a command must be a JSON object/);
  });

  test("an opened envelope hands back its command as parsed, the same command its text names", async () => {
    const queen = await generateKeyPair();
    const text = signEnvelope('{"budget":{"ops":5}}', queen.privateKey, { ctr: 3 });
    const opened = openParsedEnvelope(text, queen.publicKey, { lastCtr: 2 });
    expect(opened.value).toEqual({ budget: { ops: 5 } });
    expect(queenCommandOf(opened.value)).toEqual(parseQueenCommand(opened.command));
  });
});
