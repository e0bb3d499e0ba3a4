import assert from "node:assert/strict";
import { test } from "node:test";
import { reading } from "../workers/sensor-reading.ts";

test("a reading carries its tick and time", () => {
  const r = reading(3, 1_700_000_000_000);
  assert.equal(r.tick, 3);
  assert.equal(r.ts_ms, 1_700_000_000_000);
});

test("the temperature stays between 19 and 23 °C", () => {
  for (let n = 1; n <= 200; n++) {
    const { temp_c } = reading(n, 0);
    assert.ok(temp_c >= 19 && temp_c <= 23, `tick ${n}: ${temp_c}`);
  }
});
