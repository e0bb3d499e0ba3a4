import { describe, expect, it } from "vitest";
import { generateKeyPair } from "../../root-task/keys.ts";
import { isEnvelope, openEnvelope, signEnvelope } from "../../root-task/signed-ctl.ts";

describe("signed control envelopes", async () => {
  const queen = await generateKeyPair();
  const other = await generateKeyPair();

  it("opens an envelope signed by the queen key with a rising counter", () => {
    const text = signEnvelope('{"kill":"worker-2"}', queen.privateKey, { ctr: 8 });
    expect(isEnvelope(text)).toBe(true);
    expect(openEnvelope(text, queen.publicKey, { lastCtr: 7 })).toEqual({ command: '{"kill":"worker-2"}', ctr: 8 });
  });

  it("refuses a replayed envelope with permission: replay", () => {
    const text = signEnvelope('{"kill":"worker-2"}', queen.privateKey, { ctr: 8 });
    expect(() => openEnvelope(text, queen.publicKey, { lastCtr: 8 })).toThrow(/^permission: replay: counter 8/);
  });

  it("refuses an out-of-order counter", () => {
    const text = signEnvelope('{"kill":"worker-2"}', queen.privateKey, { ctr: 3 });
    expect(() => openEnvelope(text, queen.publicKey, { lastCtr: 9 })).toThrow(/^permission: replay/);
  });

  it("refuses an envelope signed with another key", () => {
    const text = signEnvelope('{"kill":"worker-2"}', other.privateKey, { ctr: 8 });
    expect(() => openEnvelope(text, queen.publicKey, { lastCtr: 0 })).toThrow(/^permission: envelope signature does not verify/);
  });

  it("refuses an envelope whose command was changed after signing", () => {
    const text = signEnvelope('{"kill":"worker-2"}', queen.privateKey, { ctr: 8 });
    const tampered = text.replace("worker-2", "worker-3");
    expect(() => openEnvelope(tampered, queen.publicKey, { lastCtr: 0 })).toThrow(/^permission:/);
  });

  it("refuses a malformed envelope with invalid", () => {
    expect(() => openEnvelope('{"cmd":{},"nonce":"abcdefgh","ctr":1,"sig":"x","extra":1}', queen.publicKey, { lastCtr: 0 })).toThrow(/^invalid: unknown field "extra"/);
    expect(() => openEnvelope('{"cmd":{},"nonce":"abcdefgh","ctr":0,"sig":"x"}', queen.publicKey, { lastCtr: 0 })).toThrow(/^invalid: envelope.ctr/);
    expect(() => openEnvelope("nope", queen.publicKey, { lastCtr: 0 })).toThrow(/^invalid: not JSON/);
  });
});
