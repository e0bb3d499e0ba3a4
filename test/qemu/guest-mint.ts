/**
 * Test image only: mints a worker ticket with the guest's boot key, so the
 * self-test can append to a live worker's telemetry through the kernel's
 * v9fs client as that worker. Usage: node mint.mjs ROLE SUBJECT.
 */
import { mintTicket, readPrivateKey } from "../../root-task/index.ts";

const [role, sub] = process.argv.slice(2);
const key = await readPrivateKey("/var/lib/cohesix/boot.key");
process.stdout.write(`${mintTicket({ role: role!, sub: sub! }, key, { ttlS: 600 })}\n`);
