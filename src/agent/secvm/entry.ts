/**
 * The security VM service's process entry (`nestcloud-agent.js secvm-service`, started by its
 * host-VM agent): it loads the service's modules only, not the agent's (HTTP server, QEMU
 * control, logging). Measured: ready 0.4-0.5 s after spawn instead of 1.6-1.8 s; the start is
 * on a pre-copy's critical path when a monitor attaches while the destination waits paused.
 */
import { runSecVmService } from "./service.ts";

runSecVmService().catch((e) => {
  process.stderr.write(`secvm-service: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
