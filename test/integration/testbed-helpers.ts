// Shared by the testbed integration tests: bring a testbed up in a private folder (its
// spec from server and host-VM names), create the guest they move about, check that a
// guest is alive and intact, count the QEMUs of a guest, and prove teardown left nothing
// behind. Not a test file itself (no .test.ts).
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before } from "node:test";
import {
  agentLauncher,
  endpointOf,
  type GuestStatus,
  HostVmAgentClient,
  hostVmClient,
  MigrationOrchestrator,
  testbedToken,
} from "../../src/agent/index.ts";
import { buildGuestImage } from "../../src/qemu/index.ts";
import {
  type AgentLauncher,
  checkTestbedSpec,
  down,
  type TestbedSpec,
  type TestbedState,
  up,
} from "../../src/testbed/index.ts";
import { alive, sleep } from "../support/waiting.ts";

export interface Bed {
  state: TestbedState;
  root: string;
  launcher: AgentLauncher;
  orch: MigrationOrchestrator;
  client(server: string, hostVm: string): HostVmAgentClient;
  ep(server: string, hostVm: string): ReturnType<typeof endpointOf>;
  logs: string[];
}

export async function bringUp(
  spec: unknown,
  image_?: Parameters<typeof buildGuestImage>[0],
  agents: { qemuBinary?: string } = {},
): Promise<Bed> {
  const image = await buildGuestImage(image_);
  const root = mkdtempSync(join(tmpdir(), "nc-tb-"));
  const launcher = agentLauncher({ image, ...agents });
  const logs: string[] = [];
  const log = (m: string) => logs.push(`${new Date().toISOString().slice(11, 23)} ${m}`);
  const state = await up(checkTestbedSpec(spec) as TestbedSpec, { launcher, root, log });
  return {
    state,
    root,
    launcher,
    logs,
    orch: new MigrationOrchestrator(testbedToken(state), { log, leaseMs: 8000, noProgressTimeoutMs: 4000 }),
    client: (s, h) => hostVmClient(state, s, h),
    ep: (s, h) => endpointOf(state, s, h),
  };
}

/**
 * A testbed spec from its servers and their host VMs by name, e.g. `{ a: ["h1", "h2"], b:
 * ["h1"] }`: every host VM has 1024 MiB (and `cpus`, when given).
 */
export function testbedOf(servers: Record<string, readonly string[]>, hostVm: { cpus?: number } = {}) {
  return {
    servers: Object.entries(servers).map(([name, hostVms]) => ({
      name,
      hostVms: hostVms.map((h) => ({ name: h, ...hostVm, memoryMiB: 1024 })),
    })),
  };
}

/**
 * The file's testbed (its servers and their host VMs, as for testbedOf): brought up before
 * its tests, then set up with a verify guest of each id in `setup` on the first server's
 * first host VM (createVerifyGuest), or by `setup` itself; torn down after the tests,
 * proving nothing is left. The bed is filled in before the first test.
 */
export function testbedFixture(
  servers: Record<string, readonly string[]>,
  setup: readonly string[] | ((bed: Bed) => Promise<unknown>),
  agents: { qemuBinary?: string } = {},
): Bed {
  const bed = {} as Bed;
  before(async () => {
    Object.assign(bed, await bringUp(testbedOf(servers), undefined, agents));
    if (typeof setup === "function") await setup(bed);
    else {
      const [server, hostVms] = Object.entries(servers)[0];
      await Promise.all(setup.map((g) => createVerifyGuest(bed, server, hostVms[0], g)));
    }
  });
  after(async () => {
    await tearDown(bed.state ? bed : undefined);
  });
  return bed;
}

/** The guest the tests move about: 256 MiB, the verify workload over 16 MiB of it. */
export function createVerifyGuest(bed: Bed, server: string, hostVm: string, guestId: string) {
  return bed
    .client(server, hostVm)
    .createGuest({ guestId, memoryMiB: 256, workloads: [{ kind: "verify", mib: 16 }] });
}

/** Pids of QEMU processes of `guestId` that belong to this testbed (found by our own paths). */
export function qemuPidsOf(bed: Bed, guestId: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
    } catch {
      continue;
    }
    if (!basename(argv[0] ?? "").startsWith("qemu-system")) continue;
    if (!argv.some((a) => a.includes(bed.state.stateDir))) continue;
    if (argv.some((a) => a.startsWith(`guest=${guestId},`))) out.push(Number(d));
  }
  return out;
}

export function allQemuPids(bed: Bed): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
      if (
        basename(argv[0] ?? "").startsWith("qemu-system") &&
        argv.some((a) => a.includes(bed.state.stateDir))
      ) {
        out.push(Number(d));
      }
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * Exactly one QEMU runs the guest, at the given host VM, heart-beating on (no reboot) and
 * with the verify workload reporting no lost write. Returns its status.
 */
export async function assertOneIntactCopy(
  bed: Bed,
  guestId: string,
  server: string,
  hostVm: string,
  hbBefore = 0,
): Promise<GuestStatus> {
  const c = bed.client(server, hostVm);
  const pids = qemuPidsOf(bed, guestId);
  const st = await c.guest(guestId);
  assert.equal(st.state, "running", `${guestId} runs at ${server}/${hostVm}`);
  assert.deepEqual(
    pids,
    [st.pid],
    `exactly one QEMU for ${guestId} (found ${pids.join(", ")}; agent says ${st.pid})`,
  );
  assert.equal(st.qemuStatus, "running");
  // Heartbeats go on: a later one than before, and still counting.
  const deadline = Date.now() + 8000;
  let hb = st.heartbeat?.seq ?? 0;
  while ((hb <= hbBefore || hb <= (st.heartbeat?.seq ?? 0)) && Date.now() < deadline) {
    await sleep(500);
    hb = (await c.guest(guestId)).heartbeat?.seq ?? 0;
  }
  assert.ok(
    hb > hbBefore && hb > (st.heartbeat?.seq ?? 0),
    `${guestId} heartbeat continues (${hbBefore} -> ${hb})`,
  );
  const v = await c.exec(guestId, { command: "nc-wl status verify", timeoutMs: 10_000 });
  assert.match(v.output, /state=ok .*lost=0/, `${guestId} verify: ${v.output}`);
  const after = await c.guest(guestId);
  assert.equal(after.verify?.lostLines ?? 0, 0, `${guestId}: no NESTCLOUD-VERIFY LOST line`);
  return after;
}

export async function heartbeatOf(
  bed: Bed,
  guestId: string,
  server: string,
  hostVm: string,
): Promise<number> {
  return (await bed.client(server, hostVm).guest(guestId)).heartbeat?.seq ?? 0;
}

/** Tears the testbed down and proves nothing is left: processes, namespaces, pools, state. */
export async function tearDown(bed: Bed | undefined): Promise<void> {
  if (!bed) return;
  const agents = [...bed.state.servers, ...bed.state.hostVms].map((x) => x.agent).filter((a) => a !== null);
  const report = await down(bed.state);
  assert.deepEqual(report.problems, [], "teardown without problems");
  for (const a of agents) assert.equal(alive(a.pid), false, `agent pid ${a.pid} gone`);
  assert.deepEqual(allQemuPids(bed), [], "no QEMU of this testbed left");
  assert.equal(existsSync(bed.state.poolRoot), false, "pool folder removed");
  assert.equal(existsSync(bed.state.stateDir), false, "state folder removed");
  for (const d of bed.state.cgroups.dirs) assert.equal(existsSync(d), false, `cgroup ${d} removed`);
  const { execFileSync } = await import("node:child_process");
  const ns = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
  for (const n of bed.state.network.namespaces)
    assert.ok(!ns.split("\n").some((l) => l.startsWith(`${n} `) || l === n), `netns ${n} removed`);
  rmSync(bed.root, { recursive: true, force: true });
}

/** A client with the right URL but the given token (auth tests). */
export function clientWithToken(bed: Bed, server: string, hostVm: string, token: string): HostVmAgentClient {
  return new HostVmAgentClient(endpointOf(bed.state, server, hostVm).hostVmUrl, token);
}
