/**
 * `nestcloud testbed up|down|status`: a described multi-server testbed on this machine
 * (registered in testbed-commands.ts, loaded when one of them runs).
 */
import { resolve } from "node:path";
import Table from "cli-table3";
import {
  AgentUnreachableError,
  agentLauncher,
  bootGuests,
  HostVmAgentClient,
  type HostVmStatus,
  hostVmClient,
  launcherOf,
  RelocationRefusedError,
  relocateHostVm,
  type ServerStatus,
  serverClient,
  testbedToken,
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
    if (e instanceof TestbedSpecError || e instanceof TestbedError || e instanceof RelocationRefusedError)
      throw new UsageError(e.message);
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

/** `nestcloud testbed move <id> <server/hostvm> <server>`. */
export function testbedMove(
  id: string,
  hostVm: string,
  toServer: string,
  opts: TestbedCliOptions,
): Promise<void> {
  return userErrors(async () => {
    const root = opts.root ?? defaultTestbedRoot();
    const state = readTestbedState(stateDirOf(id, root));
    if (!state) throw new UsageError(`no testbed ${id} under ${root}`);
    const m = /^([a-z][a-z0-9]{0,9})\/([a-z][a-z0-9]{0,9})$/.exec(hostVm);
    if (!m) throw new UsageError(`host VM ${hostVm}: expected server/name, e.g. a/h1`);
    const r = await relocateHostVm(state, m[1]!, m[2]!, toServer, launcherOf(state), {
      log: say(opts.quiet),
    });
    const along = r.guests
      .map((g) => `${g.guestId} (paused ${g.downtimeMs === null ? "?" : Math.round(g.downtimeMs)} ms)`)
      .join(", ");
    process.stdout.write(
      `host VM ${m[2]} moved from ${m[1]} to ${toServer} in ${r.movedInMs} ms${along ? ` with ${along}` : ""}\n`,
    );
  });
}

export interface TestbedView {
  infra: InfraStatus;
  servers: Array<ServerStatus | { server: string; error: string }>;
  hostVms: Array<HostVmStatus | { server: string; hostVm: string; error: string }>;
}

function why(e: Error): string {
  return e instanceof AgentUnreachableError ? `unreachable (${e.causeText.split(":")[0]})` : e.message;
}

async function collect(state: TestbedState): Promise<TestbedView> {
  const infra = await infraStatus(state);
  const servers = await Promise.all(
    state.servers.map((s) =>
      serverClient(state, s.name)
        .status()
        .catch((e: Error) => ({ server: s.name, error: why(e) })),
    ),
  );
  const token = testbedToken(state);
  const hostVms = await Promise.all(
    infra.hostVms.map((h) =>
      // The agent running now (its supervisor may have restarted it).
      (h.url ? new HostVmAgentClient(h.url, token) : hostVmClient(state, h.server, h.name))
        .status()
        .catch((e: Error) => ({ server: h.server, hostVm: h.name, error: why(e) })),
    ),
  );
  return { infra, servers, hostVms };
}

/**
 * The status table. Rows come from the testbed's own record (so a host VM shows even when
 * its server agent does not answer); an agent is shown as running only if it answered,
 * otherwise as DOWN (its process is gone) or NOT ANSWERING, with why.
 */
export function renderTable(v: TestbedView): string {
  const i = v.infra;
  const head = [
    `testbed ${i.id}: ${i.mode}${i.subnet ? ` ${i.subnet}` : ""}, cgroups ${i.cgroups.mode} (${i.cgroups.note})`,
    ...i.warnings.map((w) => `WARNING: ${w}`),
  ];
  const t = new Table({
    head: ["server", "host VM", "address / agent", "memory MiB (used/size)", "guests"],
    style: { head: [], border: [] },
  });
  const down = (alive: boolean, pid: number | null, error: string) =>
    `${alive ? "NOT ANSWERING" : "DOWN"}: agent pid ${pid ?? "-"}${alive ? "" : " is gone"}, ${error}`;
  for (const si of i.servers) {
    const s = v.servers.find((x) => x.server === si.name);
    if (!s || "error" in s) {
      t.push([
        si.name,
        "(server agent)",
        `${si.address}\n${down(si.agentAlive, si.agentPid, s && "error" in s ? s.error : "no answer")}`,
        "?",
        "",
      ]);
    } else {
      const pool = s.poolFiles.reduce((a, f) => a + f.allocatedBytes, 0) / 1048576;
      const io = s.iface ? `, ${s.iface.name} rx ${s.iface.rxBytes} tx ${s.iface.txBytes}` : "";
      t.push([
        s.server,
        "(server agent)",
        `${s.address} pid ${s.pid}${io}`,
        `pool ${pool.toFixed(0)} MiB in RAM`,
        "",
      ]);
    }
    const ledger = s && !("error" in s) ? s.hostVms : [];
    for (const h of i.hostVms.filter((x) => x.server === si.name)) {
      const hv = v.hostVms.find((x) => x.server === h.server && x.hostVm === h.name);
      const l = ledger.find((x) => x.name === h.name);
      const limits = h.limits
        ? `\ncpu ${h.limits.cpuQuotaPercent}% mem.max ${h.limits.memoryMaxMiB} MiB`
        : "";
      const restarts = h.agentRestarts > 0 ? `\nrestarted ${h.agentRestarts}x by its supervisor` : "";
      const supervisor = h.supervisorPid !== null && !h.supervisorAlive ? "\nSUPERVISOR DOWN" : "";
      const ok = hv && !("error" in hv) ? (hv as HostVmStatus) : null;
      const agent = ok
        ? `${h.url ?? "-"} pid ${ok.pid}`
        : down(h.agentAlive, h.agentPid, hv && "error" in hv ? hv.error : "no answer");
      const guests = (ok?.guests ?? [])
        .map(
          (g) =>
            `${g.guestId} ${g.state} hb ${g.heartbeat?.seq ?? "-"}${g.verify ? ` verify ${g.verify.lostLines ? "LOST" : "ok"}` : ""}`,
        )
        .join("\n");
      t.push([
        "",
        h.name,
        `${agent}${supervisor}${restarts}${limits}`,
        l ? `${l.reservedMiB}${l.pendingMiB ? `+${l.pendingMiB}` : ""}/${l.memoryMiB}` : `?/${h.memoryMiB}`,
        ok ? guests || "-" : "?",
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
