/**
 * The NineDoor limits a guest serves with: the baked config's, then the
 * kernel command line's `cohesix.limits=`, and a bad setting never stops the
 * boot.
 */
import { describe, expect, it } from "vitest";
import { cmdlineParams, guestLimits } from "../../root-task/guest.ts";

describe("guestLimits()", () => {
  it("takes the config's limits and lets cohesix.limits= on the command line add to them and win", () => {
    const params = cmdlineParams("console=ttyAMA0 cohesix.limits=max_conns_per_peer=64,preauth_deadline_ms=5000 rdinit=/init");
    expect(guestLimits(["max_conns=256", "max_conns_per_peer=128"], params.limits, () => {})).toEqual({
      maxConnections: 256,
      maxConnectionsPerPeer: 64,
      preauthDeadlineMs: 5000,
    });
  });

  it("reports a bad setting and keeps the others", () => {
    const said: string[] = [];
    expect(guestLimits(undefined, "max_conns=0,bogus=3,preauth_max_frame=4096", (l) => said.push(l))).toEqual({ preauthMaxFrame: 4096 });
    expect(said).toHaveLength(2);
    expect(said[0]).toMatch(/^cohesix: ignoring NineDoor limit "max_conns=0": invalid: server limits: maxConnections must be an integer of at least 1/);
    expect(said[1]).toMatch(/^cohesix: ignoring NineDoor limit "bogus=3": invalid: limit "bogus=3": expected NAME=N/);
  });

  it("is empty with nothing configured", () => {
    expect(guestLimits(undefined, undefined, () => {})).toEqual({});
  });
});
