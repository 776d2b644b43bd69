// The setup the console tests (and bench:console) share: a testbed (server a with h1 and h2; server b with h1 when
// moves must cross servers), a controller on it that plans nothing by itself, and one running
// guest g1 of tenant acme on a-h1 with a tenant token. `held` is filled as each part comes up,
// so the caller's teardown stops what started even when a later step fails.
import assert from "node:assert/strict";
import { api, type ControllerProcess, startControllerProcess, until } from "../support/controller-process.ts";
import { type Bed, bringUp } from "./testbed-helpers.ts";

export interface ConsoleBedParts {
  bed?: Bed;
  ctl?: ControllerProcess;
}

export async function bringUpConsoleBed(
  dataDir: string,
  held: ConsoleBedParts,
  opts: {
    serverB?: boolean;
    /** The controller's log level (its log is where the agents' pauses are read). */
    log?: "debug" | "info";
    /** How long g1 may take to boot. */
    bootMs?: number;
  } = {},
): Promise<{ bed: Bed; ctl: ControllerProcess; tenant: string }> {
  const bed = await bringUp({
    servers: [
      {
        name: "a",
        hostVms: [
          { name: "h1", cpus: 1, memoryMiB: 1024 },
          { name: "h2", cpus: 1, memoryMiB: 1024 },
        ],
      },
      // Pre-copy and post-copy go to another server (on one server the RAM is in its pool).
      ...(opts.serverB ? [{ name: "b", hostVms: [{ name: "h1", cpus: 1, memoryMiB: 1024 }] }] : []),
    ],
  });
  held.bed = bed;
  // No planning round during the test: the only moves are the ones asked for.
  const ctl = await startControllerProcess(
    [
      ...["--provider", "testbed", "--testbed", bed.state.stateDir],
      ...["--data-dir", dataDir, "--port", "0", "--interval", "3600"],
    ],
    90_000,
    { NESTCLOUD_LOG: opts.log ?? "debug" },
  );
  held.ctl = ctl;
  const created = await api(ctl, "POST", "/api/vms", {
    id: "g1",
    tenant: "acme",
    mipsPerVcpu: 800,
    memoryMiB: 192,
    hostVm: "a-h1",
    automation: "manual",
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const tenant = (await api(ctl, "POST", "/api/tokens", { role: "tenant", tenant: "acme" })).body
    .token as string;
  await until(
    "g1 running",
    async () => ((await api(ctl, "GET", "/api/vms/g1")).body.powerState === "running" ? true : undefined),
    opts.bootMs ?? 60_000,
    500,
  );
  return { bed, ctl, tenant };
}
