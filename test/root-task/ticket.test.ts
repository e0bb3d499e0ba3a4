import { Packr } from "msgpackr";
import { beforeAll, describe, expect, test } from "vitest";
import { InvalidError, PermissionError } from "../../nine-door/index.ts";
import {
  MAX_TICKET_LENGTH,
  TICKET_LIMITS,
  decodeTicketUnverified,
  generateKeyPair,
  mintTicket,
  sign,
  verifyTicket,
  type KeyPair,
  type TicketClaims,
} from "../../root-task/index.ts";

const NOW = Date.parse("2030-01-01T00:00:00Z");
let boot: KeyPair;
let queen: KeyPair;
let keys: (role: string) => Uint8Array[];

beforeAll(async () => {
  boot = await generateKeyPair();
  queen = await generateKeyPair();
  keys = (role) => (role === "queen" ? [queen.publicKey] : [boot.publicKey]);
});

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

/** The PermissionError message verifyTicket throws, or "ok". */
function refusal(token: string, now = NOW): string {
  try {
    verifyTicket(token, { keys, now });
    return "ok";
  } catch (err) {
    expect(err).toBeInstanceOf(PermissionError);
    return (err as Error).message;
  }
}

const worker: TicketClaims = { role: "worker-heartbeat", sub: "worker-3", budget: { ticks: 100, ops: 500, ttl_s: 120 } };

describe("mintTicket / verifyTicket", () => {
  test("round-trips every field", () => {
    const claims: TicketClaims = { role: "worker-gpu", sub: "worker-2", budget: { ops: 7 }, mounts: ["/gpu/GPU-0"] };
    const token = mintTicket(claims, boot.privateKey, { now: NOW, ttlS: 600 });
    const t = verifyTicket(token, { keys, now: NOW });
    expect(t).toMatchObject({ v: 1, role: "worker-gpu", sub: "worker-2", budget: { ops: 7 }, mounts: ["/gpu/GPU-0"] });
    expect(t.iat).toBe(NOW / 1000);
    expect(t.exp).toBe(NOW / 1000 + 600);
    expect(t.nonce).toBeInstanceOf(Uint8Array);
    expect(t.nonce.length).toBe(12);
    expect(Object.keys(t).sort()).toEqual(["budget", "exp", "iat", "mounts", "nonce", "role", "sub", "v"]);
  });

  test("a queen ticket verifies against the queen key, not the boot key", () => {
    const token = mintTicket({ role: "queen", sub: "queen" }, queen.privateKey, { now: NOW });
    expect(verifyTicket(token, { keys, now: NOW }).role).toBe("queen");
    const forgedByBoot = mintTicket({ role: "queen", sub: "queen" }, boot.privateKey, { now: NOW });
    expect(refusal(forgedByBoot)).toBe("permission: ticket signature does not verify");
  });

  test("the lifetime defaults to budget.ttl_s, then one hour", () => {
    expect(decodeTicketUnverified(mintTicket(worker, boot.privateKey, { now: NOW })).exp).toBe(NOW / 1000 + 120);
    const t = decodeTicketUnverified(mintTicket({ role: "queen", sub: "queen" }, queen.privateKey, { now: NOW }));
    expect(t.exp - t.iat).toBe(3600);
  });

  test("two tickets for the same claims differ by nonce", () => {
    const a = mintTicket(worker, boot.privateKey, { now: NOW });
    const b = mintTicket(worker, boot.privateKey, { now: NOW });
    expect(a).not.toBe(b);
  });

  test("the text is mount-option safe: base64url and one dot, no comma or =", () => {
    const token = mintTicket(worker, boot.privateKey, { now: NOW });
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{86}$/);
  });

  test("a worst-case ticket stays under 512 chars", () => {
    const max = Number.MAX_SAFE_INTEGER;
    const base = {
      role: `worker-${"x".repeat(TICKET_LIMITS.role - "worker-".length)}`,
      sub: "s".repeat(TICKET_LIMITS.sub),
      budget: { ticks: max, ops: max, ttl_s: max },
    };
    const total = TICKET_LIMITS.mountsTotal;
    // Three long mounts (2-byte string headers) or four that share the total.
    const threeLong = ["a", "b", "c"].map((c) => `/gpu/${c.repeat(total / 3 - 5)}`);
    const four = ["a", "b", "c", "d"].map((c) => `/gpu/${c.repeat(total / 4 - 5)}`);
    const oneLongest = ["/gpu/a", "/gpu/b", `/gpu/${"c".repeat(TICKET_LIMITS.mountLength - 5)}`];
    const options = { now: 2 ** 40 * 1000, ttlS: 2 ** 50 }; // 64-bit iat and exp
    for (const mounts of [threeLong, four, oneLongest]) {
      expect(mounts.join("").length).toBeLessThanOrEqual(total);
      const token = mintTicket({ ...base, mounts }, boot.privateKey, options);
      expect(token.length).toBeLessThan(MAX_TICKET_LENGTH);
      expect(verifyTicket(token, { keys, now: options.now }).mounts).toEqual(mounts);
    }
  });

  test("minting refuses claims that could never verify", () => {
    expect(() => mintTicket({ role: "admin", sub: "x" }, boot.privateKey)).toThrow(InvalidError);
    expect(() => mintTicket({ role: "worker-gpu", sub: "../x" }, boot.privateKey)).toThrow(/field sub/);
    expect(() => mintTicket({ role: "worker-gpu", sub: "w", mounts: ["gpu/GPU-0"] }, boot.privateKey)).toThrow(/field mounts/);
    expect(() => mintTicket({ role: "worker-gpu", sub: "w", budget: { ops: -1 } }, boot.privateKey)).toThrow(/budget\.ops/);
    expect(() => mintTicket(worker, boot.privateKey, { ttlS: 0 })).toThrow(InvalidError);
    expect(() => mintTicket(worker, boot.publicKey.subarray(1))).toThrow(InvalidError);
    const tooMany: TicketClaims = { role: "worker-gpu", sub: "w", mounts: ["/a", "/b", "/c", "/d", "/e"] };
    expect(() => mintTicket(tooMany, boot.privateKey)).toThrow(/at most 4/);
  });
});

describe("verifyTicket refuses, each with its own reason", () => {
  let good: string;
  beforeAll(() => {
    good = mintTicket(worker, boot.privateKey, { now: NOW });
  });

  test("a good ticket passes", () => {
    expect(refusal(good)).toBe("ok");
  });

  test("forged: a payload byte changed", () => {
    const [payload, sig] = good.split(".") as [string, string];
    const bytes = Buffer.from(payload, "base64url");
    const at = bytes.indexOf("worker-3");
    bytes[at + 7] = "9".charCodeAt(0);
    const forged = `${b64(bytes)}.${sig}`;
    expect(decodeTicketUnverified(forged).sub).toBe("worker-9");
    expect(refusal(forged)).toBe("permission: ticket signature does not verify");
  });

  test("signed by the wrong key", () => {
    const stranger = mintTicket(worker, queen.privateKey, { now: NOW });
    expect(refusal(stranger)).toBe("permission: ticket signature does not verify");
  });

  test("tampered signature", () => {
    const [payload, sig] = good.split(".") as [string, string];
    const bytes = Buffer.from(sig, "base64url");
    bytes[10] = (bytes[10] ?? 0) ^ 1;
    expect(refusal(`${payload}.${b64(bytes)}`)).toBe("permission: ticket signature does not verify");
  });

  test("expired", () => {
    const exp = NOW / 1000 + 120;
    expect(refusal(good, (exp + 61) * 1000)).toBe(`permission: ticket expired at ${new Date(exp * 1000).toISOString()}`);
    expect(refusal(good, (exp + 59) * 1000)).toBe("ok"); // within the clock skew
  });

  test("not yet valid: issued more than 60 s in the future", () => {
    const early = mintTicket(worker, boot.privateKey, { now: NOW + 61_000 });
    expect(refusal(early)).toBe(
      `permission: ticket not valid until ${new Date(NOW + 61_000).toISOString()}: issued in the future (clocks more than 60 s apart?)`,
    );
    expect(refusal(mintTicket(worker, boot.privateKey, { now: NOW + 59_000 }))).toBe("ok");
  });

  test("truncated", () => {
    expect(refusal(good.slice(0, -10))).toBe("permission: malformed ticket: signature is 57 bytes, expected 64 (truncated?)");
    expect(refusal(good.slice(0, 40))).toBe("permission: malformed ticket: expected <payload>.<signature> in base64url (truncated?)");
    expect(refusal(`${good.split(".")[0]}.`)).toBe("permission: malformed ticket: expected <payload>.<signature> in base64url (truncated?)");
    const [payload, sig] = good.split(".") as [string, string];
    const short = b64(Buffer.from(payload, "base64url").subarray(0, 20));
    expect(refusal(`${short}.${sig}`)).toBe("permission: malformed ticket: payload is not one msgpack value (truncated?)");
  });

  test("garbage", () => {
    expect(refusal("hello world")).toBe("permission: malformed ticket: expected <payload>.<signature> in base64url (truncated?)");
    expect(refusal("a+b/c=.d")).toBe("permission: malformed ticket: payload is not base64url");
    expect(refusal(`aGVsbG8.${"A".repeat(86)}`)).toBe("permission: malformed ticket: payload is not one msgpack value (truncated?)");
    expect(refusal(`${b64(new Packr().pack([1, 2]))}.${"A".repeat(86)}`)).toBe("permission: malformed ticket: payload is not a msgpack map");
    expect(refusal("x".repeat(2000))).toBe("permission: malformed ticket: 2000 chars, at most 1024");
  });

  test("empty string", () => {
    expect(refusal("")).toBe("permission: malformed ticket: empty");
  });

  test("unknown version", () => {
    const payload = new Packr({ useRecords: false }).pack({ v: 2, role: "queen", sub: "queen", iat: NOW / 1000, exp: NOW / 1000 + 60 });
    const token = `${b64(payload)}.${b64(sign(payload, queen.privateKey))}`;
    expect(refusal(token)).toBe("permission: unsupported ticket version 2 (this build reads version 1)");
  });

  test("field types wrong, even when signed", () => {
    const signed = (record: Record<string, unknown>) => {
      const payload = new Packr({ useRecords: false }).pack(record);
      return `${b64(payload)}.${b64(sign(payload, boot.privateKey))}`;
    };
    const base = { v: 1, role: "worker-gpu", sub: "worker-2", iat: NOW / 1000, exp: NOW / 1000 + 60, nonce: new Uint8Array(12) };
    expect(refusal(signed(base))).toBe("ok");
    expect(refusal(signed({ ...base, role: 7 }))).toMatch(/^permission: bad ticket field role: /);
    expect(refusal(signed({ ...base, sub: "a/b" }))).toMatch(/^permission: bad ticket field sub: /);
    expect(refusal(signed({ ...base, budget: { ops: "many" } }))).toMatch(/^permission: bad ticket field budget\.ops: /);
    expect(refusal(signed({ ...base, budget: { gpus: 1 } }))).toMatch(/^permission: bad ticket field budget: unknown key/);
    expect(refusal(signed({ ...base, mounts: "/gpu/GPU-0" }))).toMatch(/^permission: bad ticket field mounts: /);
    expect(refusal(signed({ ...base, mounts: ["/gpu/../queen"] }))).toMatch(/^permission: bad ticket field mounts: /);
    expect(refusal(signed({ ...base, iat: -1 }))).toMatch(/^permission: bad ticket field iat: /);
    expect(refusal(signed({ ...base, exp: base.iat }))).toBe("permission: bad ticket field exp: must be after iat");
    expect(refusal(signed({ ...base, nonce: new Uint8Array(4) }))).toBe("permission: bad ticket field nonce: must be 12 bytes");
    expect(refusal(signed({ ...base, admin: true }))).toBe('permission: bad ticket field "admin": unknown field');
  });

  test("a role with no trusted key", () => {
    const token = mintTicket(worker, boot.privateKey, { now: NOW });
    expect(() => verifyTicket(token, { keys: () => [], now: NOW })).toThrow("permission: no trusted key for role worker-heartbeat");
  });

  test("a plain key list is trusted for every role", () => {
    const token = mintTicket(worker, boot.privateKey, { now: NOW });
    expect(verifyTicket(token, { keys: [queen.publicKey, boot.publicKey], now: NOW }).sub).toBe("worker-3");
  });
});

describe("decodeTicketUnverified", () => {
  test("shows the claims without a key, and refuses malformed text", () => {
    const token = mintTicket(worker, boot.privateKey, { now: NOW });
    expect(decodeTicketUnverified(token)).toMatchObject({ role: "worker-heartbeat", sub: "worker-3", budget: worker.budget });
    expect(() => decodeTicketUnverified("nope")).toThrow(/malformed ticket/);
  });
});

describe("audience", () => {
  const HERE = "0123456789abcdef";
  const THERE = "fedcba9876543210";
  const queenClaims = (aud?: string): TicketClaims => ({ role: "queen", sub: "queen", ...(aud !== undefined ? { aud } : {}) });

  test("a ticket carries its audience and verifies on the appliance it names", () => {
    const token = mintTicket(queenClaims(HERE), queen.privateKey, { now: NOW });
    const t = verifyTicket(token, { keys, now: NOW, audience: HERE, requireAudience: true });
    expect(t.aud).toBe(HERE);
  });

  test("an appliance refuses a ticket made for another, with or without requireAudience", () => {
    const token = mintTicket(queenClaims(THERE), queen.privateKey, { now: NOW });
    for (const requireAudience of [false, true]) {
      expect(() => verifyTicket(token, { keys, now: NOW, audience: HERE, requireAudience })).toThrow(
        new PermissionError(`ticket is for appliance ${THERE}, this is ${HERE}: mint one for this appliance (the CLI learns its id when it pins the certificate)`),
      );
    }
  });

  test("a ticket naming no audience passes unless the verifier requires one", () => {
    const token = mintTicket(queenClaims(), queen.privateKey, { now: NOW });
    expect(verifyTicket(token, { keys, now: NOW, audience: HERE }).aud).toBeUndefined();
    expect(() => verifyTicket(token, { keys, now: NOW, audience: HERE, requireAudience: true })).toThrow(/^permission: ticket names no audience: /);
  });

  test("an audience that is not a boot key id is refused at mint and at verify", () => {
    expect(() => mintTicket(queenClaims("ABCDEF0123456789"), queen.privateKey, { now: NOW })).toThrow(InvalidError);
    const payload = new Packr({ useRecords: false, variableMapSize: true }).pack({
      v: 1, role: "queen", sub: "queen", aud: "not-a-key-id", iat: NOW / 1000, exp: NOW / 1000 + 60, nonce: new Uint8Array(12),
    });
    const token = `${b64(payload)}.${b64(sign(payload, queen.privateKey))}`;
    expect(refusal(token)).toBe("permission: bad ticket field aud: must be a boot key id, 16 lower-case hex digits");
  });

  test("a worst-case ticket with an audience stays under 512 chars, because it names no mounts", () => {
    const max = Number.MAX_SAFE_INTEGER;
    const claims: TicketClaims = {
      role: `worker-${"x".repeat(TICKET_LIMITS.role - "worker-".length)}`,
      sub: "s".repeat(TICKET_LIMITS.sub),
      budget: { ticks: max, ops: max, ttl_s: max },
      aud: THERE,
    };
    const options = { now: 2 ** 40 * 1000, ttlS: 2 ** 50 };
    expect(mintTicket(claims, boot.privateKey, options).length).toBeLessThan(MAX_TICKET_LENGTH);
    expect(() => mintTicket({ ...claims, mounts: ["/gpu/GPU-0"] }, boot.privateKey, options)).toThrow(
      new InvalidError("ticket field aud: a ticket names mounts or an audience, not both"),
    );
  });
});
