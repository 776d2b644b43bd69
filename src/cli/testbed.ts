/**
 * `nestcloud testbed up|down|status`: a described multi-server testbed on this machine
 * (registered in testbed-commands.ts, loaded when one of them runs).
 */
import { resolve } from "node:path";
import Table from "cli-table3";
import {
  agentLauncher,
  bootGuests,
  type HostVmStatus,
  hostVmClient,
  type ServerStatus,
  serverClient,
} from "../agent/index.ts";
import { buildGuestImage } from "../qemu/index.ts";
import {
  defaultTestbedRoot,
  down,
  type InfraStatus,
  infraStatus,
  listTestbeds,
  loadTestbedSpec,
  readTestbedState,
  stateDirOf,
  TestbedError,
  TestbedSpecError,
  type TestbedState,
  up,
} from "../testbed/index.ts";
import { UsageError } from "./usage.ts";

export interface TestbedCliOptions {
  root?: string;
  quiet?: boolean;
}

const say = (quiet: boolean | undefined) => (msg: string) => {
  if (!quiet) process.stderr.write(`${msg}\n`);
};

function userErrors<T>(f: () => Promise<T>): Promise<T> {
  return f().catch((e) => {
    if (e instanceof TestbedSpecError || e instanceof TestbedError) throw new UsageError(e.message);
    throw e;
  });
}

export function testbedUp(file: string, opts: TestbedCliOptions & { loopback?: boolean }): Promise<void> {
  return userErrors(async () => {
    const log = say(opts.quiet);
    const spec = loadTestbedSpec(file);
    const image = await buildGuestImage({ log });
    const state = await up(spec, {
      launcher: agentLauncher({ image }),
      root: opts.root,
      specFile: resolve(file),
      loopback: opts.loopback,
      log,
    });
    try {
      await bootGuests(state, spec, { log });
    } catch (e) {
      log(`booting guests failed (${(e as Error).message}); tearing the testbed down`);
      await down(state, { log, keepLogs: true });
      throw e;
    }
    process.stdout.write(`${renderTable(await collect(state))}\n`);
    process.stdout.write(
      `testbed ${state.id} is up (${state.network.mode}); token in ${state.tokenFile}\n` +
        `stop it with: nestcloud testbed down ${state.id}\n`,
    );
  });
}

function pickId(root: string, id: string | undefined): string {
  if (id) return id;
  const ids = listTestbeds(root);
  if (ids.length === 1) return ids[0];
  if (ids.length === 0) throw new UsageError(`no testbed under ${root}`);
  throw new UsageError(`${ids.length} testbeds under ${root} (${ids.join(", ")}): name the one to stop`);
}

export function testbedDown(id: string | undefined, opts: TestbedCliOptions): Promise<void> {
  return userErrors(async () => {
    const root = opts.root ?? defaultTestbedRoot();
    const which = pickId(root, id);
    const dir = stateDirOf(which, root);
    if (!readTestbedState(dir)) throw new UsageError(`no testbed ${which} under ${root}`);
    const r = await down(dir, { log: say(opts.quiet) });
    process.stdout.write(
      `testbed ${r.id} down: ${r.stoppedAgents.length} agent(s) stopped, ${r.reapedQemus.length} orphaned QEMU(s) reaped\n`,
    );
    if (r.problems.length > 0) {
      throw new TestbedError(`testbed ${r.id}: teardown left problems: ${r.problems.join("; ")}`);
    }
  });
}

export interface TestbedView {
  infra: InfraStatus;
  servers: Array<ServerStatus | { server: string; error: string }>;
  hostVms: Array<HostVmStatus | { server: string; hostVm: string; error: string }>;
}

async function collect(state: TestbedState): Promise<TestbedView> {
  const infra = await infraStatus(state);
  const servers = await Promise.all(
    state.servers.map((s) =>
      serverClient(state, s.name)
        .status()
        .catch((e: Error) => ({ server: s.name, error: e.message })),
    ),
  );
  const hostVms = await Promise.all(
    state.hostVms.map((h) =>
      hostVmClient(state, h.server, h.name)
        .status()
        .catch((e: Error) => ({ server: h.server, hostVm: h.name, error: e.message })),
    ),
  );
  return { infra, servers, hostVms };
}

function renderTable(v: TestbedView): string {
  const i = v.infra;
  const head = [
    `testbed ${i.id}: ${i.mode}${i.subnet ? ` ${i.subnet}` : ""}, cgroups ${i.cgroups.mode} (${i.cgroups.note})`,
    ...i.warnings.map((w) => `WARNING: ${w}`),
  ];
  const t = new Table({
    head: ["server", "host VM", "address / agent", "memory MiB (used/size)", "guests"],
    style: { head: [], border: [] },
  });
  for (const s of v.servers) {
    if ("error" in s) {
      t.push([s.server, "(server agent)", `unreachable: ${s.error}`, "", ""]);
      continue;
    }
    const pool = s.poolFiles.reduce((a, f) => a + f.allocatedBytes, 0) / 1048576;
    const io = s.iface ? `, ${s.iface.name} rx ${s.iface.rxBytes} tx ${s.iface.txBytes}` : "";
    t.push([
      s.server,
      "(server agent)",
      `${s.address} pid ${s.pid}${io}`,
      `pool ${pool.toFixed(0)} MiB in RAM`,
      "",
    ]);
    for (const h of s.hostVms) {
      const hv = v.hostVms.find((x) => !("error" in x) && x.server === s.server && x.hostVm === h.name) as
        | HostVmStatus
        | undefined;
      const guests = (hv?.guests ?? [])
        .map(
          (g) =>
            `${g.guestId} ${g.state} hb ${g.heartbeat?.seq ?? "-"}${g.verify ? ` verify ${g.verify.lostLines ? "LOST" : "ok"}` : ""}`,
        )
        .join("\n");
      const limits = i.hostVms.find((x) => x.server === s.server && x.name === h.name)?.limits;
      t.push([
        "",
        h.name,
        `${h.url ?? "-"} pid ${h.pid ?? "-"}${limits ? `\ncpu ${limits.cpuQuotaPercent}% mem.max ${limits.memoryMaxMiB} MiB` : ""}`,
        `${h.reservedMiB}${h.pendingMiB ? `+${h.pendingMiB}` : ""}/${h.memoryMiB}`,
        guests || "-",
      ]);
    }
  }
  return `${head.join("\n")}\n${t.toString()}`;
}

export function testbedStatus(
  id: string | undefined,
  opts: TestbedCliOptions & { output?: string },
): Promise<void> {
  return userErrors(async () => {
    const output = opts.output ?? "table";
    if (output !== "table" && output !== "json")
      throw new UsageError(`--output ${output}: expected table or json`);
    const root = opts.root ?? defaultTestbedRoot();
    const ids = id ? [id] : listTestbeds(root);
    const views: TestbedView[] = [];
    for (const x of ids) {
      const state = readTestbedState(stateDirOf(x, root));
      if (!state) throw new UsageError(`no testbed ${x} under ${root}`);
      views.push(await collect(state));
    }
    if (output === "json") process.stdout.write(`${JSON.stringify(views, null, 2)}\n`);
    else if (views.length === 0) process.stdout.write(`no testbed under ${root}\n`);
    else process.stdout.write(`${views.map(renderTable).join("\n\n")}\n`);
  });
}
