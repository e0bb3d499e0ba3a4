/**
 * The DESIGN §5 paths the authority matrix covers, shared by the policy
 * unit test (policy.test.ts) and the matrix through a live server
 * (appliance.test.ts), so both check the same table.
 */

/** Every path of DESIGN §5 the matrix checks, in table order. */
export const PATHS = [
  "/",
  "/proc",
  "/proc/boot",
  "/proc/lifecycle/state",
  "/proc/sessions",
  "/proc/workers",
  "/proc/mem",
  "/queen",
  "/queen/ctl",
  "/queen/lifecycle/ctl",
  "/log",
  "/log/queen.log",
  "/worker",
  "/worker/worker-1",
  "/worker/worker-1/telemetry",
  "/worker/worker-1/ctl",
  "/worker/worker-2/telemetry",
  "/gpu",
  "/gpu/GPU-0/info",
  "/gpu/GPU-0/ctl",
  "/gpu/GPU-0/job",
  "/gpu/GPU-1/info",
] as const;

/** One path of the table. */
export type Path = (typeof PATHS)[number];
