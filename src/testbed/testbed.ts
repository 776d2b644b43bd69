/**
 * A multi-server testbed on one machine: `up` builds the network, slices and pool folders
 * and starts one server agent per physical server and one host-VM agent per host VM (the
 * agents' commands come from the caller, see AgentLauncher); `down` removes everything the
 * state file names, also after a crash of `up` or of any agent.
 */
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { reapOrphans } from "../qemu/index.ts";
import { createSlice, planCgroups, removeCgroups, sliceLimits } from "./cgroups.ts";
import { newTestbedId, poolDir, poolRoot, sliceName } from "./names.ts";
import {
  createNetwork,
  destroyNetwork,
  namespacesPresent,
  probeNamespaces,
  setServerLink,
} from "./network.ts";
import {
  isAlive,
  launch,
  launchSupervised,
  readSupervisedRecord,
  readyUrl,
  stopProcess,
  waitReady,
  waitSupervisedReady,
} from "./processes.ts";
import type { TestbedSpec } from "./spec.ts";
import {
  defaultTestbedRoot,
  type HostVmRecord,
  type ProcessRecord,
  readTestbedState,
  type ServerRecord,
  type TestbedState,
  writeTestbedState,
} from "./state.ts";

export class TestbedError extends Error {
  override name = "TestbedError";
}

export interface AgentLaunch {
  argv: string[];
  /** Written as JSON (0600) to the agent's config file before it starts. */
  config: unknown;
}

export interface ServerAgentContext {
  testbedId: string;
  server: ServerRecord;
  hostVms: HostVmRecord[];
  tokenFile: string;
  configFile: string;
  readyFile: string;
}

export interface HostVmAgentContext {
  testbedId: string;
  server: ServerRecord;
  hostVm: HostVmRecord;
  serverAgentUrl: string;
  tokenFile: string;
  configFile: string;
  readyFile: string;
}

/** How to run the agents (the agent module provides one; the testbed does not know their code). */
export interface AgentLauncher {
  server(ctx: ServerAgentContext): AgentLaunch;
  hostVm(ctx: HostVmAgentContext): AgentLaunch;
}

export interface UpOptions {
  launcher: AgentLauncher;
  /** Folder holding one folder per testbed. Default defaultTestbedRoot(). */
  root?: string;
  specFile?: string;
  /** Use loopback addresses even if namespaces work. */
  loopback?: boolean;
  readyTimeoutMs?: number;
  log?: (msg: string) => void;
}

export async function up(spec: TestbedSpec, opts: UpOptions): Promise<TestbedState> {
  const log = opts.log ?? (() => {});
  const id = spec.name ?? newTestbedId();
  const stateDir = join(opts.root ?? defaultTestbedRoot(), id);
  if (readTestbedState(stateDir)) {
    throw new TestbedError(
      `testbed ${id} already exists (${stateDir}); run \`nestcloud testbed down ${id}\` first`,
    );
  }
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const tokenFile = join(stateDir, "token");
  writeFileSync(tokenFile, `${randomBytes(32).toString("base64url")}\n`, { mode: 0o600 });

  const state: TestbedState = {
    version: 1,
    id,
    createdAt: new Date().toISOString(),
    specFile: opts.specFile ?? null,
    spec,
    stateDir,
    tokenFile,
    poolRoot: poolRoot(id),
    warnings: [],
    network: {
      mode: "netns",
      subnet: null,
      hostAddress: null,
      bridgeNetns: null,
      rootLinks: [],
      namespaces: [],
    },
    cgroups: { mode: "none", note: "", dirs: [] },
    servers: spec.servers.map((s, index) => ({
      name: s.name,
      index,
      netns: null,
      address: "",
      iface: null,
      poolDir: poolDir(id, s.name),
      stateDir: join(stateDir, s.name),
      agent: null,
    })),
    hostVms: spec.servers.flatMap((s) =>
      s.hostVms.map((h) => ({
        server: s.name,
        name: h.name,
        cpus: h.cpus ?? 1,
        memoryMiB: h.memoryMiB,
        stateDir: join(stateDir, s.name, h.name),
        qemuDir: join(stateDir, s.name, h.name, "q"),
        cgroupDirs: [],
        limits: null,
        supervisor: null,
        agentRecordFile: join(stateDir, s.name, h.name, "agent.process.json"),
        agent: null,
      })),
    ),
    complete: false,
  };
  const persist = () => writeTestbedState(state);
  persist();
  try {
    if (opts.loopback || spec.network?.loopback) {
      state.network.mode = "loopback";
      state.warnings.push(
        "loopback mode requested: servers share the root namespace (no isolation, no link cuts)",
      );
    } else {
      const refused = await probeNamespaces(id);
      if (refused) {
        state.network.mode = "loopback";
        const w =
          `network namespaces refused (${refused.split("\n")[0]}): falling back to loopback addresses ` +
          "127.0.x.y per server; servers are NOT isolated, links cannot be cut, interface counters are shared";
        state.warnings.push(w);
        log(`WARNING: ${w}`);
      }
    }
    log(`testbed ${id}: network (${state.network.mode})`);
    await createNetwork(state, spec.network?.subnet, persist);

    const plan = planCgroups();
    state.cgroups = { mode: plan.mode, note: plan.note, dirs: [] };
    for (const hv of state.hostVms) {
      if (state.cgroups.mode === "none") break;
      const limits = sliceLimits(hv.cpus, hv.memoryMiB);
      try {
        hv.cgroupDirs = createSlice(plan, id, sliceName(hv.server, hv.name), limits, (d) => {
          state.cgroups.dirs.push(d);
          persist();
        });
        hv.limits = { cpuQuotaPercent: limits.cpus * 100, memoryMaxMiB: limits.memoryMaxMiB };
      } catch (e) {
        state.cgroups.note = `${plan.note}, but setting limits failed (${(e as Error).message}): no limits`;
        state.cgroups.mode = "none";
        for (const h of state.hostVms) {
          h.cgroupDirs = [];
          h.limits = null;
        }
      }
    }
    if (state.cgroups.mode === "none") log(`testbed ${id}: no cgroup limits: ${state.cgroups.note}`);
    persist();

    for (const s of state.servers) {
      mkdirSync(s.poolDir, { recursive: true, mode: 0o700 });
      mkdirSync(s.stateDir, { recursive: true, mode: 0o700 });
    }
    const readyMs = opts.readyTimeoutMs ?? 60_000;
    for (const s of state.servers) {
      const ctx: ServerAgentContext = {
        testbedId: id,
        server: s,
        hostVms: state.hostVms.filter((h) => h.server === s.name),
        tokenFile,
        configFile: join(s.stateDir, "server-agent.json"),
        readyFile: join(s.stateDir, "server-agent.ready"),
      };
      s.agent = startAgent(
        opts.launcher.server(ctx),
        s.netns,
        [],
        ctx.configFile,
        ctx.readyFile,
        join(s.stateDir, "server-agent.log"),
      );
      persist();
    }
    for (const s of state.servers) {
      s.agent!.url = await waitReady(s.agent!, readyMs);
      log(`testbed ${id}: server agent ${s.name} at ${s.agent!.url}`);
    }
    persist();
    const agentArgv = new Map<HostVmRecord, string[]>();
    for (const hv of state.hostVms) {
      const s = state.servers.find((x) => x.name === hv.server)!;
      mkdirSync(hv.qemuDir, { recursive: true, mode: 0o700 });
      const l = opts.launcher.hostVm(hostVmContext(state, s, hv));
      agentArgv.set(hv, l.argv);
      hv.supervisor = startSupervisedAgent(state, s, hv, l);
      persist();
    }
    for (const hv of state.hostVms) {
      hv.agent = await waitSupervisedReady(hv.supervisor!, agentRecordFile(hv), agentArgv.get(hv)!, readyMs);
      persist();
      log(`testbed ${id}: host-VM agent ${hv.server}/${hv.name} at ${hv.agent.url} (pid ${hv.agent.pid})`);
    }
    state.complete = true;
    persist();
    return state;
  } catch (e) {
    log(`testbed ${id}: start failed (${(e as Error).message}); tearing down`);
    await down(state, { log }).catch((d) => log(`teardown after failed start: ${d}`));
    throw e;
  }
}

function hostVmContext(state: TestbedState, s: ServerRecord, hv: HostVmRecord): HostVmAgentContext {
  return {
    testbedId: state.id,
    server: s,
    hostVm: hv,
    serverAgentUrl: s.agent?.url ?? "",
    tokenFile: state.tokenFile,
    configFile: join(hv.stateDir, "agent.json"),
    readyFile: join(hv.stateDir, "agent.ready"),
  };
}

function startAgent(
  l: AgentLaunch,
  netns: string | null,
  cgroupDirs: readonly string[],
  configFile: string,
  readyFile: string,
  logFile: string,
): ProcessRecord {
  mkdirSync(join(configFile, ".."), { recursive: true, mode: 0o700 });
  writeFileSync(configFile, `${JSON.stringify(l.config, null, 2)}\n`, { mode: 0o600 });
  rmSync(readyFile, { force: true });
  return launch({ argv: l.argv, netns, cgroupDirs, logFile, readyFile, configFile });
}

function agentRecordFile(hv: HostVmRecord): string {
  return hv.agentRecordFile ?? join(hv.stateDir, "agent.process.json");
}

/** A host VM's supervisor, in the server's namespace and the host VM's slice (its agent inherits both). */
function startSupervisedAgent(
  state: TestbedState,
  s: ServerRecord,
  hv: HostVmRecord,
  l: AgentLaunch,
): ProcessRecord {
  const ctx = hostVmContext(state, s, hv);
  mkdirSync(hv.stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(ctx.configFile, `${JSON.stringify(l.config, null, 2)}\n`, { mode: 0o600 });
  rmSync(ctx.readyFile, { force: true });
  return launchSupervised({
    argv: l.argv,
    netns: s.netns,
    cgroupDirs: hv.cgroupDirs,
    logFile: join(hv.stateDir, "agent.log"),
    readyFile: ctx.readyFile,
    configFile: ctx.configFile,
    recordFile: agentRecordFile(hv),
  });
}

/**
 * The host VM's agent as it runs now: its supervisor replaces it after a crash (new pid,
 * same port), so the record `up` made may be stale.
 */
export function currentHostVmAgent(hv: HostVmRecord): ProcessRecord | null {
  const r = readSupervisedRecord(agentRecordFile(hv));
  if (!r || r.pid === hv.agent?.pid) return hv.agent;
  const base: ProcessRecord = hv.agent ?? {
    pid: r.pid,
    startTime: r.startTime,
    argv: [],
    logFile: join(hv.stateDir, "agent.log"),
    readyFile: join(hv.stateDir, "agent.ready"),
    configFile: join(hv.stateDir, "agent.json"),
    url: null,
    startedAt: r.startedAt,
  };
  return {
    ...base,
    pid: r.pid,
    startTime: r.startTime,
    startedAt: r.startedAt,
    url: readyUrl(base.readyFile, r.pid) ?? base.url,
  };
}

/**
 * Starts a host VM's supervisor (and so its agent) again after both died or were killed
 * (while the supervisor lives, it restarts the agent by itself). The new agent adopts the
 * QEMUs the old one left running.
 */
export async function restartHostVmAgent(
  state: TestbedState,
  server: string,
  hostVm: string,
  launcher: AgentLauncher,
  readyTimeoutMs = 60_000,
): Promise<ProcessRecord> {
  const hv = state.hostVms.find((h) => h.server === server && h.name === hostVm);
  const s = state.servers.find((x) => x.name === server);
  if (!hv || !s) throw new TestbedError(`no host VM ${server}/${hostVm} in testbed ${state.id}`);
  if (hv.supervisor && isAlive(hv.supervisor)) {
    throw new TestbedError(
      `agent of ${server}/${hostVm} is supervised (supervisor pid ${hv.supervisor.pid}): it restarts by itself`,
    );
  }
  const running = currentHostVmAgent(hv);
  if (running && isAlive(running))
    throw new TestbedError(`agent of ${server}/${hostVm} is still running (pid ${running.pid})`);
  const l = launcher.hostVm(hostVmContext(state, s, hv));
  hv.agentRecordFile = agentRecordFile(hv);
  hv.supervisor = startSupervisedAgent(state, s, hv, l);
  writeTestbedState(state);
  hv.agent = await waitSupervisedReady(hv.supervisor, hv.agentRecordFile, l.argv, readyTimeoutMs);
  writeTestbedState(state);
  return hv.agent;
}

/**
 * The first half of moving a host VM that runs guests: a second agent of the same host VM
 * (same name, slice and token) on the new server, in its namespace and with its memory
 * pool, registered with its server agent, so that the guests can be pre-copied to it one by
 * one while the old agent still runs the rest. It keeps its QEMUs in a folder of its own
 * (`m<n>/q`: the agents keep security-VM records and the console identity beside qemuDir, so
 * the two agents must not share that parent); moveHostVmProcesses then hands that folder to
 * the host VM's supervised agent, which adopts the QEMUs. Unsupervised: it lives minutes.
 */
export async function startLandingAgent(
  state: TestbedState,
  server: string,
  hostVm: string,
  toServer: string,
  launcher: AgentLauncher,
  readyTimeoutMs = 60_000,
): Promise<{ agent: ProcessRecord; server: string; qemuDir: string }> {
  const hv = state.hostVms.find((h) => h.server === server && h.name === hostVm);
  const to = state.servers.find((x) => x.name === toServer);
  if (!hv) throw new TestbedError(`no host VM ${server}/${hostVm} in testbed ${state.id}`);
  if (!to?.agent?.url) throw new TestbedError(`no ready server ${toServer} in testbed ${state.id}`);
  if (hv.landing && isAlive(hv.landing.agent))
    throw new TestbedError(`host VM ${server}/${hostVm} is moving already (pid ${hv.landing.agent.pid})`);
  let n = 1;
  while (existsSync(join(hv.stateDir, `m${n}`))) n++;
  const dir = join(hv.stateDir, `m${n}`);
  const qemuDir = join(dir, "q");
  mkdirSync(qemuDir, { recursive: true, mode: 0o700 });
  // The console's identity is the host VM's, not the agent process's: it moves along.
  const identity = join(dirname(hv.qemuDir), "console-identity.pem");
  if (existsSync(identity)) copyFileSync(identity, join(dir, "console-identity.pem"));
  const ctx: HostVmAgentContext = {
    testbedId: state.id,
    server: to,
    hostVm: { ...hv, server: toServer, qemuDir },
    serverAgentUrl: to.agent.url,
    tokenFile: state.tokenFile,
    configFile: join(dir, "agent.json"),
    readyFile: join(dir, "agent.ready"),
  };
  const l = launcher.hostVm(ctx);
  const agent = startAgent(l, to.netns, hv.cgroupDirs, ctx.configFile, ctx.readyFile, join(dir, "agent.log"));
  hv.landing = { agent, server: toServer, qemuDir };
  writeTestbedState(state);
  try {
    agent.url = await waitReady(agent, readyTimeoutMs);
  } catch (e) {
    await stopLandingAgent(state, hv);
    throw e;
  }
  writeTestbedState(state);
  return hv.landing;
}

/** A move given up: its landing agent stops gracefully (so do the QEMUs it still has). */
export async function stopLandingAgent(state: TestbedState, hv: HostVmRecord): Promise<void> {
  if (!hv.landing) return;
  if (isAlive(hv.landing.agent) && !(await stopProcess(hv.landing.agent, 25_000)))
    throw new TestbedError(
      `the landing agent of ${hv.server}/${hv.name} (pid ${hv.landing.agent.pid}) did not stop`,
    );
  await reapOrphans(hv.landing.qemuDir).catch(() => {});
  hv.landing = null;
  writeTestbedState(state);
}

/**
 * Moves a host VM to another server, as the underlying cloud's live migration of a host VM
 * would: its supervisor and agent stop and start again in the new server's namespace, with
 * the new server's memory pool and server agent (the agent re-registers there). Its
 * identity (`key`) stays. The caller has emptied the old agent and told both server agents
 * (the agent module's relocateHostVm does both); the testbed only moves processes and
 * records. With a landing agent (startLandingAgent) holding the guests, that agent is
 * killed (SIGKILL: its QEMUs stay, as after a crash) and the host VM's new agent takes its
 * QEMU folder and adopts them.
 */
export async function moveHostVmProcesses(
  state: TestbedState,
  server: string,
  hostVm: string,
  toServer: string,
  launcher: AgentLauncher,
  readyTimeoutMs = 60_000,
): Promise<HostVmRecord> {
  const hv = state.hostVms.find((h) => h.server === server && h.name === hostVm);
  const to = state.servers.find((x) => x.name === toServer);
  if (!hv) throw new TestbedError(`no host VM ${server}/${hostVm} in testbed ${state.id}`);
  if (!to) throw new TestbedError(`no server ${toServer} in testbed ${state.id}`);
  if (toServer === server) throw new TestbedError(`host VM ${server}/${hostVm} is on ${toServer} already`);
  if (state.hostVms.some((h) => h.server === toServer && h.name === hostVm))
    throw new TestbedError(`server ${toServer} has a host VM named ${hostVm} already`);
  for (const p of [hv.supervisor ?? null, currentHostVmAgent(hv)]) {
    if (p && isAlive(p) && !(await stopProcess(p, 25_000)))
      throw new TestbedError(`the agent of ${server}/${hostVm} (pid ${p.pid}) did not stop`);
  }
  const landing = hv.landing;
  if (landing) {
    if (landing.server !== toServer)
      throw new TestbedError(`host VM ${server}/${hostVm} is landing on ${landing.server}, not ${toServer}`);
    if (isAlive(landing.agent)) {
      try {
        process.kill(landing.agent.pid, "SIGKILL");
      } catch {
        // gone already
      }
      const deadline = Date.now() + 10_000;
      while (isAlive(landing.agent) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (isAlive(landing.agent))
        throw new TestbedError(
          `the landing agent of ${server}/${hostVm} (pid ${landing.agent.pid}) survived SIGKILL`,
        );
    }
    hv.qemuDir = landing.qemuDir;
    hv.landing = null;
  }
  hv.key ??= `${server}/${hostVm}`;
  hv.server = toServer;
  hv.movedAt = new Date().toISOString();
  writeTestbedState(state);
  // The server agents' config files list their host VMs: a restarted one must know the move.
  for (const s of state.servers) {
    if (!s.agent) continue;
    const ctx: ServerAgentContext = {
      testbedId: state.id,
      server: s,
      hostVms: state.hostVms.filter((h) => h.server === s.name),
      tokenFile: state.tokenFile,
      configFile: join(s.stateDir, "server-agent.json"),
      readyFile: join(s.stateDir, "server-agent.ready"),
    };
    writeFileSync(ctx.configFile, `${JSON.stringify(launcher.server(ctx).config, null, 2)}\n`, {
      mode: 0o600,
    });
  }
  const l = launcher.hostVm(hostVmContext(state, to, hv));
  hv.agentRecordFile = agentRecordFile(hv);
  rmSync(hv.agentRecordFile, { force: true });
  hv.supervisor = startSupervisedAgent(state, to, hv, l);
  hv.agent = null;
  writeTestbedState(state);
  hv.agent = await waitSupervisedReady(hv.supervisor, hv.agentRecordFile, l.argv, readyTimeoutMs);
  writeTestbedState(state);
  return hv;
}

export interface DownReport {
  id: string;
  stoppedAgents: number[];
  reapedQemus: number[];
  removedPoolFiles: string[];
  problems: string[];
}

export interface DownOptions {
  /** Keep the state folder (logs) after teardown; the state file is removed either way. */
  keepLogs?: boolean;
  log?: (msg: string) => void;
}

/** Tears a testbed down completely; every step runs even when an earlier one failed. */
export async function down(stateOrDir: TestbedState | string, opts: DownOptions = {}): Promise<DownReport> {
  const log = opts.log ?? (() => {});
  const state = typeof stateOrDir === "string" ? readTestbedState(stateOrDir) : stateOrDir;
  if (!state) throw new TestbedError(`no testbed state in ${stateOrDir}`);
  const report: DownReport = {
    id: state.id,
    stoppedAgents: [],
    reapedQemus: [],
    removedPoolFiles: [],
    problems: [],
  };
  // Supervisors first (SIGTERM: they stop their agents, which stop their guests, and
  // restart nothing any more), then host-VM agents still alive (a supervisor was killed),
  // then server agents; each group in parallel.
  const groups = [
    state.hostVms.map((h) => h.supervisor ?? null),
    state.hostVms.flatMap((h) => [h.agent, currentHostVmAgent(h), h.landing?.agent ?? null]),
    state.servers.map((s) => s.agent),
  ];
  for (const group of groups) {
    await Promise.all(
      [...new Map(group.filter((a) => a !== null).map((a) => [a.pid, a])).values()].map(async (a) => {
        if (!isAlive(a)) return;
        if (await stopProcess(a, 25_000)) report.stoppedAgents.push(a.pid);
        else report.problems.push(`agent pid ${a.pid} survived SIGKILL`);
      }),
    );
  }
  // QEMUs of agents that died (crash, SIGKILL) are found from their state files, by pid.
  for (const qemuDir of state.hostVms.flatMap((h) => [
    h.qemuDir,
    ...(h.landing ? [h.landing.qemuDir] : []),
  ])) {
    try {
      const r = await reapOrphans(qemuDir, log);
      report.reapedQemus.push(...r.killed.map((k) => k.pid));
      report.removedPoolFiles.push(...r.removedPoolFiles);
      for (const s of r.skipped) report.problems.push(`${s.instanceId}: ${s.reason}`);
    } catch (e) {
      report.problems.push(`reaping ${qemuDir}: ${(e as Error).message}`);
    }
  }
  try {
    rmSync(state.poolRoot, { recursive: true, force: true });
  } catch (e) {
    report.problems.push(`removing ${state.poolRoot}: ${(e as Error).message}`);
  }
  report.problems.push(...(await removeCgroups(state.cgroups.dirs)));
  report.problems.push(...(await destroyNetwork(state.network)));
  try {
    if (opts.keepLogs) rmSync(join(state.stateDir, "testbed.json"), { force: true });
    else rmSync(state.stateDir, { recursive: true, force: true });
  } catch (e) {
    report.problems.push(`removing ${state.stateDir}: ${(e as Error).message}`);
  }
  for (const p of report.problems) log(`down ${state.id}: ${p}`);
  return report;
}

export async function cutLink(state: TestbedState, server: string, up: boolean): Promise<void> {
  const s = state.servers.find((x) => x.name === server);
  if (!s) throw new TestbedError(`no server ${server} in testbed ${state.id}`);
  await setServerLink(s, up);
}

export interface InfraStatus {
  id: string;
  mode: "netns" | "loopback";
  subnet: string | null;
  warnings: string[];
  cgroups: { mode: string; note: string };
  complete: boolean;
  namespaces: Record<string, boolean>;
  servers: Array<{
    name: string;
    netns: string | null;
    address: string;
    poolDir: string;
    agentPid: number | null;
    agentAlive: boolean;
    url: string | null;
  }>;
  hostVms: Array<{
    server: string;
    name: string;
    cpus: number;
    memoryMiB: number;
    limits: HostVmRecord["limits"];
    /** The agent running now (its supervisor may have restarted it). */
    agentPid: number | null;
    agentAlive: boolean;
    url: string | null;
    supervisorPid: number | null;
    supervisorAlive: boolean;
    /** How often the supervisor restarted the agent. */
    agentRestarts: number;
  }>;
}

/** What the state file says and whether its processes and namespaces still exist. */
export async function infraStatus(state: TestbedState): Promise<InfraStatus> {
  return {
    id: state.id,
    mode: state.network.mode,
    subnet: state.network.subnet,
    warnings: state.warnings,
    cgroups: { mode: state.cgroups.mode, note: state.cgroups.note },
    complete: state.complete,
    namespaces: await namespacesPresent(state.network),
    servers: state.servers.map((s) => ({
      name: s.name,
      netns: s.netns,
      address: s.address,
      poolDir: s.poolDir,
      agentPid: s.agent?.pid ?? null,
      agentAlive: s.agent ? isAlive(s.agent) : false,
      url: s.agent?.url ?? null,
    })),
    hostVms: state.hostVms.map((h) => {
      const a = currentHostVmAgent(h);
      return {
        server: h.server,
        name: h.name,
        cpus: h.cpus,
        memoryMiB: h.memoryMiB,
        limits: h.limits,
        agentPid: a?.pid ?? null,
        agentAlive: a ? isAlive(a) : false,
        url: a?.url ?? null,
        supervisorPid: h.supervisor?.pid ?? null,
        supervisorAlive: h.supervisor ? isAlive(h.supervisor) : false,
        agentRestarts: readSupervisedRecord(agentRecordFile(h))?.restarts ?? 0,
      };
    }),
  };
}

export function stateDirOf(id: string, root = defaultTestbedRoot()): string {
  return join(root, id);
}

export function testbedExists(id: string, root = defaultTestbedRoot()): boolean {
  return existsSync(join(root, id, "testbed.json"));
}
