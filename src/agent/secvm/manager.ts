/**
 * The host-VM agent's security VMs (issue 12): each one an isolated monitoring service placed
 * in this host VM like a guest (see docs/architecture.md, "Security VMs: the service"):
 *
 * - its own cgroup (cgroup.ts: CPU and memory limits; everything it starts is killed with it),
 * - its own network namespace `ncsv-<id>` (the network monitors' TAP devices and Suricata),
 * - its own uid and gid (derived from the host VM and its id) and a private folder
 *   /run/ncsv/<host>-<id> (0700, that uid) holding the only ways to its targets: QEMU's NBD
 *   server for each target disk (a unix socket there; one random export name per round), the
 *   mirror socket each target NIC's filter-mirror connects to, and the targets' RAM files as
 *   descriptors opened read-only by the agent and inherited by the service at start;
 * - an IPC channel to the agent: its alerts go into the security VM's bounded log here (the
 *   agent serves it), and it asks for each disk round's view (bitmap rotation and fleece over
 *   QMP, which only the agent holds) for its own targets only (protocol.ts checks).
 *
 * Faults: a service that exits is alerted and started again (at most MAX_RESTARTS a minute,
 * then failed); one that stops sending heartbeats (wedged, stopped) is killed with its cgroup
 * (a stopped mirror reader would otherwise freeze its guest's QEMU once the socket's buffer is
 * full: docs/architecture.md) and started again; a target whose QEMU dies is alerted, and when
 * the guest runs again the service is started again with the new QEMU's RAM, NBD server and
 * mirror.
 *
 * Targets of another host VM of the same server (a target's `via`: channel direct): the
 * target's agent exports them to this security VM alone (exports.ts: the NBD socket in a
 * folder of this security VM's uid, the mirror towards this service's socket, the RAM file's
 * path, which this agent opens read-only and hands over as a descriptor like a local one); disk
 * views are asked of that agent; the export is polled for a lost target and taken down with
 * the security VM. All of a security VM's targets share one channel (its alerts' label).
 *
 * Agent restarts: each security VM is recorded (its request and its service's pid) in the host
 * VM's `secvms` folder beside qemuDir. The service cannot outlive its agent usefully (its IPC
 * channel, and so its alerts and disk views, went with it; it exits when the channel closes),
 * so a successor agent does not adopt it: recover() kills whatever the predecessor's security
 * VM left (the service's process group, its cgroup's Suricata and TAP writer: no orphans),
 * takes its state off the adopted target QEMUs (mirror filter, NBD server, bitmaps) and starts
 * it again, with an alert that says so (the alert log starts afresh).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import Value from "typebox/value";
import {
  type Alert,
  AlertLog,
  type AlertPage,
  alert,
  createNetns,
  deleteNetns,
  type MonitorKind,
} from "../../monitor/index.ts";
import {
  addNetMirror,
  type DiskView,
  listDirtyBitmaps,
  openDiskView,
  type QemuProcess,
  removeDirtyBitmap,
  removeNetMirror,
  setLevel,
  startNbdServer,
  stopNbdServer,
} from "../../qemu/index.ts";
import {
  CreateSecVmBody,
  type CreateSecVmRequest,
  type SecVmStatus,
  type SecVmTarget,
} from "../api-types.ts";
import type { HostVmAgentClient } from "../client.ts";
import type { HostVm } from "../hostvm/state.ts";
import { AgentError, conflict } from "../http.ts";
import { agentCommand } from "../launcher.ts";
import {
  cgroupPids,
  createSecVmCgroup,
  killCgroup,
  placeInCgroup,
  releaseHierarchies,
  removeCgroup,
  type SecVmCgroup,
} from "./cgroup.ts";
import {
  type AgentMessage,
  type DiskBaselineReply,
  type MonitorReport,
  parseServiceMessage,
  type ServiceConfig,
  type ServiceTarget,
} from "./protocol.ts";
import { attachSecVmLink, caDirOf, issueSecVmCredential, routeTo, type SecVmRemote } from "./remote.ts";

/** Where security VMs' private folders go: traversable by their uids (a testbed root is not). */
export const SECVM_RUN_ROOT = "/run/ncsv";
const MAX_RESTARTS = 5;
const HEARTBEAT_MS = 1000;
/** No heartbeat for this long: the service is wedged (or stopped) and is killed. */
export const WEDGED_MS = 6000;
const READY_TIMEOUT_MS = 90_000;
/** How long a disk round may go on before a migration away closes its view under it. */
const DEPARTURE_WAIT_MS = 5000;
/** How long the service may take to hand over a disk baseline (it answers between reads). */
const BASELINE_TIMEOUT_MS = 10_000;
/** The most an arriving target's service keeps the control level (its start and first round). */
const LEND_MS = 30_000;

export const secvmErrors = {
  exists: (id: string) => conflict(`security VM ${id} already exists`),
  watched: (g: string, by: string) => conflict(`guest ${g} is already watched by security VM ${by}`),
  notRunning: (g: string) => conflict(`guest ${g} has no running QEMU`),
  noDevice: (g: string, kind: string, d: string) =>
    new AgentError(400, "bad_request", `guest ${g} has no ${kind} ${d}`),
  mixed: () =>
    new AgentError(
      400,
      "bad_request",
      "a security VM's targets share one channel: all of this host VM or all of other host VMs (via)",
    ),
  exported: (g: string, to: string) => conflict(`guest ${g} is exported to security VM ${to}`),
  nbdBusy: (g: string) =>
    conflict(`guest ${g}'s QEMU already runs an NBD server (a disk tap?): a security VM needs its own`),
};

/** A disk view asked for too early (an arriving target): the service asks again, no alert. */
class NotYet extends Error {}

/** A uid/gid of its own per security VM and host VM, away from any real account. */
export function secvmUid(testbedId: string, server: string, hostVm: string, id: string): number {
  const h = createHash("sha256").update(`${testbedId}/${server}/${hostVm}/${id}`).digest();
  return 0x40000000 + (h.readUInt32BE(0) & 0x0fffffff);
}

interface TargetRuntime {
  spec: SecVmTarget;
  qemu: QemuProcess | null;
  pid: number | null;
  ramFd: number | null;
  nbdSocket: string | null;
  mirrorSocket: string | null;
  mirrorId: string;
  /** Disk rounds: the bitmap recording since the previous view, and the view open now. */
  bitmapSeq: number;
  recording: string | null;
  view: DiskView | null;
  /** The view being opened now, if any (settles either way). */
  viewOp?: Promise<void>;
  lost: boolean;
  /** A target of another host VM: its agent, and the export it made for this security VM. */
  peer: HostVmAgentClient | null;
  exportId: string | null;
}

export class SecVm {
  state: "starting" | "running" | "restarting" | "failed" | "stopping" | "stopped" = "starting";
  readonly log: AlertLog;
  readonly uid: number;
  readonly netns: string;
  readonly dir: string;
  cgroup: SecVmCgroup = { mode: "none", dirs: [], shown: [], note: "" };
  child: ChildProcess | null = null;
  restarts = 0;
  private restartTimes: number[] = [];
  error: string | null = null;
  maxRssKiB: number | null = null;
  monitors: MonitorReport[] = [];
  private lastBeat = 0;
  /** While lent the control level (an arriving target's first round): until when at most. */
  private lentUntil: number | null = null;
  private watch: NodeJS.Timeout | null = null;
  private waiters = new Set<() => void>();
  private readonly targets: TargetRuntime[];
  private readonly targetIds: Set<string>;
  /** Messages from the service that failed validation. */
  rejected = 0;
  private cycle: Promise<void> | null = null;
  /** Told each service pid as it starts (the manager records it for a successor agent). */
  onSpawn: ((pid: number | undefined) => void) | null = null;

  constructor(
    readonly req: CreateSecVmRequest,
    private readonly host: HostVm,
  ) {
    const { cfg } = host;
    this.log = new AlertLog(req.alertLogSize ?? 2000);
    this.uid = secvmUid(cfg.testbedId, cfg.server, cfg.hostVm, req.secvmId);
    this.netns = `ncsv-${createHash("sha256").update(`${cfg.testbedId}/${cfg.server}/${cfg.hostVm}`).digest("hex").slice(0, 6)}-${req.secvmId}`;
    this.dir = join(SECVM_RUN_ROOT, this.netns.slice(5));
    this.targets = req.targets.map((spec, i) => ({
      spec,
      qemu: null,
      pid: null,
      ramFd: null,
      nbdSocket: null,
      mirrorSocket: null,
      mirrorId: `svm-${req.secvmId}-${i}`,
      bitmapSeq: 0,
      recording: null,
      view: null,
      lost: false,
      peer: spec.via ? host.ctx.peer(spec.via.agentUrl) : null,
      exportId: null,
    }));
    this.targetIds = new Set(req.targets.map((t) => t.guestId));
  }

  get id(): string {
    return this.req.secvmId;
  }

  /** Its alerts' channel: local, or its targets' `via` channel (direct or remote). */
  get channel(): "local" | "direct" | "remote" {
    return this.req.targets.find((t) => t.via)?.via?.channel ?? "local";
  }

  /** The remote channel's address and credential (remote.ts), made with its namespace. */
  remote: SecVmRemote | null = null;

  /** Checks the targets now (400/409 before anything is made). */
  check(): void {
    const via = this.req.targets.filter((t) => t.via).length;
    if (via > 0 && via < this.req.targets.length) throw secvmErrors.mixed();
    if (new Set(this.req.targets.map((t) => t.via?.channel)).size > 1) throw secvmErrors.mixed();
    for (const t of this.req.targets) {
      // Another host VM's guest: its agent checks it when asked for the export.
      if (t.via) continue;
      // Arriving (see arrivingOf): its mirror and NBD server go on the paused incoming QEMU
      // (the mirror then sees the guest's first frame here); disk views wait until it runs.
      const arriving = this.host.guests.has(t.guestId) ? undefined : this.arrivingOf(t.guestId);
      if (arriving) continue;
      const g = this.host.guestOf(t.guestId);
      if (!g.qemu?.isRunning) throw secvmErrors.notRunning(t.guestId);
      const devs = g.config.devices ?? [];
      if (t.disk && !devs.some((d) => d.kind === "disk" && d.id === t.disk))
        throw secvmErrors.noDevice(t.guestId, "disk", t.disk);
      if (t.nic && !devs.some((d) => d.kind === "nic" && d.id === t.nic))
        throw secvmErrors.noDevice(t.guestId, "NIC", t.nic);
      if (
        t.disk &&
        devs.some((d) => d.kind === "tap" && devs.some((x) => x.kind === "disk" && x.id === d.of))
      )
        throw secvmErrors.nbdBusy(t.guestId);
    }
  }

  status(): SecVmStatus {
    return {
      secvmId: this.id,
      state: this.state,
      pid: this.child?.pid ?? null,
      uid: this.uid,
      netns: this.netns,
      cgroup: this.cgroup.shown,
      cgroupNote: this.cgroup.note,
      targets: this.req.targets,
      monitors: this.monitors,
      restarts: this.restarts,
      alerts: { last: this.log.last, kept: this.log.size, evicted: this.log.evicted },
      maxRssKiB: this.maxRssKiB,
      error: this.error,
    };
  }

  push(a: Alert): void {
    this.log.push(a);
    for (const w of this.waiters) w();
    this.waiters.clear();
  }

  /** Alerts after `after`; waits up to waitMs for one when there is none yet. */
  async alerts(after: number, limit: number, waitMs: number): Promise<AlertPage> {
    if (waitMs > 0 && this.log.last <= after) {
      await new Promise<void>((resolve) => {
        const w = () => {
          clearTimeout(t);
          resolve();
        };
        const t = setTimeout(() => {
          this.waiters.delete(w);
          resolve();
        }, waitMs);
        this.waiters.add(w);
      });
    }
    return this.log.since(after, limit);
  }

  /** The security VM's own alert about one of its targets (not from a monitor's findings). */
  private own(
    t: SecVmTarget,
    severity: Alert["severity"],
    summary: string,
    evidence: Record<string, string | number | null>,
  ): void {
    const kinds: MonitorKind[] = [
      ...(t.memory !== false ? (["memory"] as const) : []),
      ...(t.disk ? (["disk"] as const) : []),
      ...(t.nic ? (["network"] as const) : []),
    ];
    for (const monitor of kinds)
      this.push(
        alert({
          time: Date.now(),
          target: t.guestId,
          monitor,
          channel: this.channel,
          severity,
          summary,
          evidence: { source: "secvm", secvm: this.id, ...evidence },
        }),
      );
  }

  /**
   * The QEMU of `guestId` arriving here by a pre-copy not yet handed to the agent as a guest
   * (listening: the destination, -S, never ran; or started and being handed over), when this
   * security VM was asked to watch arriving targets. The same QEMU becomes the guest's.
   */
  private arrivingOf(guestId: string): QemuProcess | undefined {
    if (!this.req.arriving) return undefined;
    for (const m of this.host.incoming.values())
      if (
        m.req.guest.guestId === guestId &&
        (m.req.mode === "precopy" || m.req.mode === "handover") &&
        m.arriving &&
        m.qemu?.isRunning
      )
        return m.qemu;
    return undefined;
  }

  /** The QEMU that runs (or, arriving, holds) a target now: the guest's, else its incoming's. */
  private qemuOf(guestId: string): QemuProcess | undefined {
    const g = this.host.guests.get(guestId)?.qemu;
    if (g?.isRunning) return g;
    return this.arrivingOf(guestId) ?? g ?? undefined;
  }

  /** Makes the namespace, folder and cgroup, then starts the service. */
  async create(): Promise<void> {
    const c = this.req;
    mkdirSync(SECVM_RUN_ROOT, { recursive: true, mode: 0o711 });
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { mode: 0o700 });
    chownSync(this.dir, this.uid, this.uid);
    mkdirSync(join(this.dir, "scratch"), { mode: 0o700 });
    chownSync(join(this.dir, "scratch"), this.uid, this.uid);
    this.cgroup = createSecVmCgroup(`secvm-${this.netns.slice(5)}`, {
      cpus: c.cpus ?? 1,
      memoryMiB: c.memoryMiB ?? 512,
    });
    await createNetns(this.netns);
    if (this.channel === "remote") this.remote = await this.prepareRemote();
    if (c.signatures && c.signatures.length > 0)
      writeFileSync(
        join(this.dir, "operator.ndb"),
        c.signatures.map((s) => `${s.name}:0:*:${s.hex}\n`).join(""),
        { mode: 0o644 },
      );
    if (c.rules) writeFileSync(join(this.dir, "tenant.rules"), c.rules, { mode: 0o644 });
    await this.startService();
    this.watch = setInterval(() => void this.tick(), 500);
  }

  private async attachTargets(): Promise<ServiceTarget[]> {
    const out: ServiceTarget[] = [];
    let fdIndex = 4; // 0-2 stdio, 3 the IPC channel
    for (const t of this.targets) {
      if (t.peer) {
        out.push(await this.attachExport(t, fdIndex));
        if (t.ramFd !== null) fdIndex++;
        continue;
      }
      const arriving = this.host.guests.has(t.spec.guestId) ? undefined : this.arrivingOf(t.spec.guestId);
      if (arriving) await loaded(arriving, t.spec.guestId);
      const q = arriving ?? this.host.guestOf(t.spec.guestId).qemu;
      if (!q?.isRunning || q.pid === undefined) throw secvmErrors.notRunning(t.spec.guestId);
      t.qemu = q;
      t.pid = q.pid;
      t.lost = false;
      t.bitmapSeq = 0;
      t.recording = null;
      const st: ServiceTarget = { guestId: t.spec.guestId, memory: null, disk: null, nic: null };
      // Another monitor's disk baseline, taken over at the first start only (a restarted
      // service's first round is full, as before).
      const baseline =
        this.restarts === 0 ? this.req.diskBaselines?.find((b) => b.guestId === t.spec.guestId) : undefined;
      if (t.spec.disk && baseline) st.diskBaseline = baseline.files;
      if (t.spec.memory !== false) {
        t.ramFd = openSync(q.poolFile, "r");
        st.memory = { fd: fdIndex++ };
      }
      if (t.spec.disk) {
        t.nbdSocket = join(this.dir, `nbd-${t.spec.guestId}.sock`);
        rmSync(t.nbdSocket, { force: true });
        try {
          await startNbdServer(q.qmp, { type: "unix", path: t.nbdSocket });
        } catch (e) {
          if (/already running/i.test((e as Error).message)) throw secvmErrors.nbdBusy(t.spec.guestId);
          throw e;
        }
        chownSync(t.nbdSocket, this.uid, this.uid);
        st.disk = { socket: t.nbdSocket };
      }
      if (t.spec.nic) {
        t.mirrorSocket = join(this.dir, `mirror-${t.spec.guestId}.sock`);
        st.nic = { mirrorSocket: t.mirrorSocket, monitorId: `${this.id}${this.targets.indexOf(t)}` };
      }
      out.push(st);
    }
    return out;
  }

  /** Its address on the servers' network and its certificate (names its targets and address). */
  private async prepareRemote(): Promise<SecVmRemote> {
    const { cfg } = this.host;
    const key = `${cfg.testbedId}/${cfg.server}/${cfg.hostVm}/${this.id}`;
    const address = await attachSecVmLink(cfg.testbedId, cfg.address, this.netns, key);
    const dir = join(this.dir, "tls");
    mkdirSync(dir, { mode: 0o700 });
    const targets = this.req.targets.map((t) => t.guestId);
    return issueSecVmCredential(caDirOf(cfg), `secvm-${this.netns.slice(5)}`, targets, address, dir);
  }

  /** A target of another host VM: asks its agent for the export (made anew if it had one). */
  private async attachExport(t: TargetRuntime, fd: number): Promise<ServiceTarget> {
    const peer = t.peer as HostVmAgentClient;
    const { cfg } = this.host;
    const remote = this.remote;
    const index = this.targets.indexOf(t);
    // Remote: the service's TLS listener on its own address (its namespace: any port is free).
    const mirror = remote && t.spec.nic ? { host: remote.address, port: 7100 + index } : undefined;
    const mirrorSocket = !remote && t.spec.nic ? join(this.dir, `mirror-${t.spec.guestId}.sock`) : undefined;
    const x = await peer.createSecVmExport({
      guestId: t.spec.guestId,
      memory: t.spec.memory !== false,
      ...(t.spec.disk ? { disk: t.spec.disk } : {}),
      ...(t.spec.nic ? { nic: t.spec.nic } : {}),
      channel: remote ? "remote" : "direct",
      grantee: {
        secvmId: this.id,
        server: cfg.server,
        hostVm: cfg.hostVm,
        uid: this.uid,
        ...(mirrorSocket ? { mirrorSocket } : {}),
        ...(remote ? { certFingerprint: remote.fingerprint, ...(mirror ? { mirror } : {}) } : {}),
      },
    });
    t.exportId = x.exportId;
    t.pid = x.qemuPid;
    t.qemu = null;
    t.lost = false;
    const st: ServiceTarget = { guestId: t.spec.guestId, memory: null, disk: null, nic: null };
    if (remote) {
      // Routes to the target's server only (its page server and relay listen there).
      for (const h of new Set([x.pageServer?.host, x.relay?.host])) if (h) await routeTo(this.netns, h);
      if (x.pageServer) st.memory = { pageServer: x.pageServer };
      if (x.relay) st.disk = { relay: x.relay };
      if (mirror) st.nic = { listen: mirror, monitorId: `${this.id}${index}` };
      return st;
    }
    if (x.ramFile) {
      // Same server: the pool file is this machine's; read-only, and the service gets only this.
      t.ramFd = openSync(x.ramFile, "r");
      st.memory = { fd };
    }
    if (x.nbdSocket) st.disk = { socket: x.nbdSocket };
    if (mirrorSocket) st.nic = { mirrorSocket, monitorId: `${this.id}${this.targets.indexOf(t)}` };
    return st;
  }

  private async startService(): Promise<void> {
    const c = this.req;
    const targets = await this.attachTargets();
    const fds = this.targets.filter((t) => t.ramFd !== null).map((t) => t.ramFd as number);
    const logFd = openSync(join(SECVM_RUN_ROOT, `${this.netns.slice(5)}.log`), "a", 0o600);
    const [node, entry] = agentCommand();
    const child = spawn("ip", ["netns", "exec", this.netns, node, entry, "secvm-service"], {
      stdio: ["ignore", logFd, logFd, "ipc", ...fds],
      // Its own process group: killed as one when there is no cgroup to kill.
      detached: true,
      env: { ...process.env, NESTCLOUD_SECVM: this.id },
    });
    closeSync(logFd);
    this.child = child;
    this.onSpawn?.(child.pid);
    // A send to a service that just died fails here, not as an uncaught error of the agent.
    child.on("error", (e) => {
      this.error = `service: ${e.message}`;
    });
    if (child.pid === undefined) throw new Error("the security VM's service did not start");
    // In its cgroup before it starts anything (it waits for its configuration first), and
    // at the guests' priority: its monitors are bulk work, not the agent's control path. Except
    // a first start for an arriving target: a pre-copy's destination waits paused for its
    // baseline, so it is lent the control level until its first memory round (or LEND_MS).
    placeInCgroup(this.cgroup, child.pid);
    if (this.req.arriving && this.restarts === 0) this.lentUntil = Date.now() + LEND_MS;
    else {
      this.lentUntil = null;
      setLevel(child.pid, "guest");
    }
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`service not ready in ${READY_TIMEOUT_MS} ms`)),
        READY_TIMEOUT_MS,
      );
      child.once("exit", (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`service exited before it was ready (${code ?? sig})`));
      });
      child.on("message", (raw) => {
        const m = parseServiceMessage(raw, this.targetIds);
        if (!m) {
          this.rejected++;
          return;
        }
        if (m.type === "ready") {
          clearTimeout(timer);
          resolve();
        } else void this.onMessage(m);
      });
    });
    ready.catch(() => {});
    const config: ServiceConfig = {
      type: "config",
      secvmId: this.id,
      uid: this.uid,
      gid: this.uid,
      dir: this.dir,
      netns: this.netns,
      channel: this.channel,
      tls: this.remote?.tls ?? null,
      memoryPeriodMs: c.memoryPeriodMs ?? 2000,
      diskPeriodMs: c.diskPeriodMs ?? 10_000,
      clamavDatabases: c.signatures?.length ? [join(this.dir, "operator.ndb")] : [],
      ruleFiles: c.rules ? [join(this.dir, "tenant.rules")] : [],
      targets,
      heartbeatMs: HEARTBEAT_MS,
    };
    child.send(config satisfies AgentMessage);
    // The RAM descriptors are the service's now.
    for (const t of this.targets)
      if (t.ramFd !== null) {
        closeSync(t.ramFd);
        t.ramFd = null;
      }
    await ready;
    this.lastBeat = Date.now();
    // (A target of another host VM: its agent added the mirror with the export.)
    for (const t of this.targets)
      if (t.spec.nic && t.qemu && t.mirrorSocket && !t.peer)
        await addNetMirror(t.qemu.qmp, {
          id: t.mirrorId,
          netdev: `nic-${t.spec.nic}`,
          to: { type: "unix", path: t.mirrorSocket, reconnectSeconds: 1 },
        });
    this.state = "running";
    child.once("exit", (code, signal) => void this.onExit(child, code, signal));
  }

  private baselineReqs = 0;
  private readonly baselineWaits = new Map<number, (m: DiskBaselineReply) => void>();

  /** A target's disk baseline as the service holds it now (to hand to its next monitor). */
  async diskBaseline(guestId: string): Promise<DiskBaselineReply> {
    const t = this.targets.find((x) => x.spec.guestId === guestId);
    if (!t?.spec.disk)
      throw new AgentError(404, "not_found", `security VM ${this.id} checks no disk of ${guestId}`);
    const child = this.child;
    if (!child?.connected || this.state !== "running")
      throw conflict(`security VM ${this.id} is ${this.state}: no baseline to give`);
    const reqId = ++this.baselineReqs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.baselineWaits.delete(reqId);
        reject(conflict(`security VM ${this.id} gave no baseline in ${BASELINE_TIMEOUT_MS} ms`));
      }, BASELINE_TIMEOUT_MS);
      this.baselineWaits.set(reqId, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      child.send({ type: "disk-baseline-get", reqId, guestId } satisfies AgentMessage, () => {});
    });
  }

  private async onMessage(m: Exclude<ReturnType<typeof parseServiceMessage>, null>): Promise<void> {
    if (m.type === "alert") this.push(m.alert);
    else if (m.type === "disk-baseline") {
      const w = this.baselineWaits.get(m.reqId);
      this.baselineWaits.delete(m.reqId);
      w?.(m);
    } else if (m.type === "heartbeat") {
      this.lastBeat = Date.now();
      this.maxRssKiB = Math.max(this.maxRssKiB ?? 0, m.rssKiB);
      this.monitors = m.monitors;
      if (this.lentUntil !== null && m.monitors.some((x) => x.monitor === "memory" && x.rounds > 0))
        this.endLoan();
    } else if (m.type === "disk-view-open" || m.type === "disk-view-close") {
      const t = this.targets.find((x) => x.spec.guestId === m.guestId);
      if (!t) return;
      const open = m.type === "disk-view-open";
      const asked =
        t.peer && t.exportId
          ? t.peer.secVmExportDiskView(t.exportId, open)
          : (open ? this.opening(t) : this.closeView(t)).then((v) => ({
              exportName: v?.exportName ?? "",
              dirtyBitmap: v?.frozenBitmap ?? null,
            }));
      const answer = await asked.then(
        (v) => ({
          type: "disk-view" as const,
          reqId: m.reqId,
          ok: true as const,
          exportName: v.exportName,
          dirtyBitmap: v.dirtyBitmap,
        }),
        (e) => ({
          type: "disk-view" as const,
          reqId: m.reqId,
          ok: false as const,
          error: (e as Error).message,
          ...(e instanceof NotYet ? { wait: true } : {}),
        }),
      );
      if (this.child?.connected) this.child.send(answer satisfies AgentMessage, () => {});
    }
  }

  /** openView, remembered while it runs (a departure waits for it, then closes the view). */
  private opening(t: TargetRuntime): Promise<DiskView> {
    const op = this.openView(t);
    t.viewOp = op.then(
      () => {},
      () => {},
    );
    return op;
  }

  /** A point-in-time view of the target's disk for one round: rotation + fleece + export. */
  private async openView(t: TargetRuntime): Promise<DiskView> {
    const q = t.qemu;
    const id = t.spec.guestId;
    // Not a loss, only not now: still arriving (its block nodes are the incoming's, inactive
    // until it runs here), migrating away (QEMU refuses a fleece of a disk its migration
    // uses), or gone by a migration (tick() says so). The disk's next monitor takes this
    // one's baseline over, so what changes meanwhile is still reported.
    if (!this.host.guests.has(id)) throw new NotYet(`guest ${id} is still arriving`);
    if (this.leaving(id) || (!q?.isRunning && this.movedAway(id)))
      throw new NotYet(`guest ${id} is migrating away`);
    if (!q?.isRunning || t.lost) throw new Error(`guest ${id} has no running QEMU`);
    if (t.view) await this.closeView(t);
    const node = `disk-${t.spec.disk}`;
    const start = `sv${this.id}b${++t.bitmapSeq}`;
    let freeze = t.recording ?? undefined;
    if (freeze && !(await listDirtyBitmaps(q.qmp, node)).some((b) => b.name === freeze)) freeze = undefined;
    t.view = await openDiskView(q.qmp, {
      node,
      exportId: `sv-${this.id}-${randomBytes(8).toString("hex")}`,
      fleeceFile: join(this.dir, `fleece-${t.spec.guestId}.qcow2`),
      rotate: { freeze, start },
    });
    t.recording = start;
    return t.view;
  }

  private async closeView(t: TargetRuntime): Promise<null> {
    const v = t.view;
    t.view = null;
    if (v && t.qemu?.isRunning) await v.close();
    return null;
  }

  /**
   * `guestId` is about to migrate away (its outgoing migration is registered, so no view opens
   * any more): a disk round reading a view of it is given DEPARTURE_WAIT_MS to end and close it,
   * then the view is closed under it (that round fails, alerted as a failed round; the target's
   * next monitor takes the baseline over, so nothing changed meanwhile goes unreported).
   */
  async departing(guestId: string): Promise<void> {
    const t = this.targets.find((x) => x.spec.guestId === guestId && !x.peer);
    if (!t) return;
    await t.viewOp;
    if (!t.view) return;
    const end = Date.now() + DEPARTURE_WAIT_MS;
    while (t.view && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    await this.closeView(t).catch(() => {});
  }

  /** Heartbeat watchdog and target watch, every 500 ms. */
  /** The lent control level ends: the service is bulk work at the guests' level again. */
  private endLoan(): void {
    this.lentUntil = null;
    if (this.child?.pid !== undefined) setLevel(this.child.pid, "guest");
  }

  private async tick(): Promise<void> {
    if (this.lentUntil !== null && Date.now() > this.lentUntil) this.endLoan();
    if (this.cycle || this.state !== "running") return;
    const child = this.child;
    if (Date.now() - this.lastBeat > WEDGED_MS && child) {
      this.error = `no heartbeat for ${Date.now() - this.lastBeat} ms: killed`;
      for (const t of this.targets)
        this.own(
          t.spec,
          "critical",
          `security VM ${this.id} stopped answering (wedged): killed and started again`,
          {
            kind: "secvm-wedged",
            silentMs: Date.now() - this.lastBeat,
          },
        );
      this.lastBeat = Date.now();
      // Killed and started again as one cycle: a kill of the old cgroup still looping while the new
      // service is placed in it would kill the new one too (its exit is then not a second restart).
      this.cycle = this.restartCycle("wedged");
      return;
    }
    if (this.targets.some((t) => t.peer)) {
      this.pollExports();
      return;
    }
    for (const t of this.targets) {
      const q = this.qemuOf(t.spec.guestId);
      const running = q?.isRunning === true;
      if (!t.lost && (!running || q?.pid !== t.pid)) {
        t.lost = true;
        t.view = null;
        // A guest migrated away is an expected departure (its monitor is made again where it
        // runs now, before this one is removed), not a loss.
        const away = running ? undefined : this.movedAway(t.spec.guestId);
        if (away)
          this.own(t.spec, "info", `target ${t.spec.guestId} migrated away (${away}): this monitor ends`, {
            kind: "target-moved",
            qemuPid: t.pid,
            migration: away,
          });
        else
          this.own(
            t.spec,
            "critical",
            `target ${t.spec.guestId} lost: its QEMU ${running ? "was replaced" : "is gone"}`,
            { kind: "target-lost", qemuPid: t.pid },
          );
      } else if (t.lost && running) {
        this.own(
          t.spec,
          "info",
          `target ${t.spec.guestId} runs again (QEMU pid ${q?.pid}): monitors start again`,
          { kind: "target-back", qemuPid: q?.pid ?? null },
        );
        this.cycle = this.restartCycle("target back");
        return;
      }
    }
  }

  private polling = false;
  private lastPoll = 0;
  /**
   * Targets of other host VMs, every 2 s: an export whose QEMU is gone (or the export itself)
   * is a lost target; a lost one whose guest runs again there is monitored again (the service
   * is started again, which asks for a fresh export).
   */
  private pollExports(): void {
    if (this.polling || Date.now() - this.lastPoll < 2000) return;
    this.polling = true;
    this.lastPoll = Date.now();
    void (async () => {
      for (const t of this.targets) {
        const peer = t.peer;
        if (!peer || !t.exportId) continue;
        if (!t.lost) {
          const x = await peer.secVmExport(t.exportId).catch((e: Error) => e);
          // An unreachable agent is not a loss yet (it may be restarting); a 404 is: its
          // successor does not keep exports, and asked again it makes a fresh one.
          const why =
            x instanceof Error
              ? "status" in x && x.status === 404
                ? "its export is gone (the target's agent restarted?)"
                : null
              : x.running
                ? null
                : "its QEMU is gone";
          if (why) {
            t.lost = true;
            this.own(t.spec, "critical", `target ${t.spec.guestId} lost: ${why}`, {
              kind: "target-lost",
              qemuPid: t.pid,
              agent: t.spec.via?.agentUrl ?? null,
            });
          }
        } else {
          const g = await peer.guest(t.spec.guestId).catch(() => null);
          if (g?.state === "running" && !this.cycle && this.state === "running") {
            this.own(
              t.spec,
              "info",
              `target ${t.spec.guestId} runs again (QEMU pid ${g.pid}): monitors start again`,
              {
                kind: "target-back",
                qemuPid: g.pid ?? null,
              },
            );
            // Found again: the restart asks its agent for a fresh export of the new QEMU.
            t.lost = false;
            this.cycle = this.restartCycle("target back");
            return;
          }
        }
      }
    })().finally(() => {
      this.polling = false;
    });
  }

  /** Whether an outgoing migration of `guestId` is under way (not yet confirmed or undone). */
  private leaving(guestId: string): boolean {
    for (const m of this.host.outgoing.values()) if (m.guest.guestId === guestId && !m.done()) return true;
    return false;
  }

  /** The id of a completed migration that took `guestId` away from this host VM, if any. */
  private movedAway(guestId: string): string | undefined {
    for (const m of this.host.outgoing.values())
      if (m.guest.guestId === guestId && (m.phase === "completed" || m.phase === "confirmed"))
        return m.migrationId;
    return undefined;
  }

  private async onExit(child: ChildProcess, code: number | null, signal: string | null): Promise<void> {
    if (child !== this.child || this.state === "stopping" || this.state === "stopped") return;
    for (const t of this.targets)
      this.own(
        t.spec,
        "critical",
        `security VM ${this.id}'s service died (${code ?? signal}): monitoring interrupted`,
        { kind: "secvm-died", code, signal },
      );
    if (this.cycle) return;
    this.cycle = this.restartCycle("service died");
  }

  /**
   * One restart as the security VM's cycle: a failure in it is the security VM's (alerted, the
   * error kept; the watchdog or the next event tries again), never the agent's (an unhandled
   * rejection would kill the agent and every guest's control path with it).
   */
  private restartCycle(why: string): Promise<void> {
    return this.restart(why)
      .catch((e: unknown) => {
        const message = (e as Error).message;
        this.error = `restart (${why}) failed: ${message}`;
        for (const t of this.targets)
          this.own(t.spec, "critical", `security VM ${this.id} could not be restarted: ${message}`, {
            kind: "secvm-restart-failed",
            why,
            error: message,
          });
      })
      .finally(() => {
        this.cycle = null;
      });
  }

  /** Stops what runs (kills the cgroup, detaches the targets) and starts the service again. */
  private async restart(why: string): Promise<void> {
    const now = Date.now();
    this.restartTimes = this.restartTimes.filter((x) => now - x < 60_000);
    if (this.restartTimes.length >= MAX_RESTARTS) {
      this.state = "failed";
      this.error = `${MAX_RESTARTS} restarts within a minute; last: ${why}`;
      await this.teardownRun();
      return;
    }
    this.restartTimes.push(now);
    this.state = "restarting";
    await this.teardownRun();
    if (this.targets.some((t) => (t.peer ? t.lost : !this.qemuOf(t.spec.guestId)?.isRunning))) {
      // Waits for the target: tick() brings it back when the guest runs.
      this.state = "running";
      this.lastBeat = Date.now() + 1e12;
      return;
    }
    this.restarts++;
    try {
      await this.startService();
      this.lastBeat = Date.now();
    } catch (e) {
      this.error = `restart failed: ${(e as Error).message}`;
      this.state = "failed";
    }
  }

  /** Kills the service with everything in its cgroup, then detaches the targets (QMP). */
  private async teardownRun(): Promise<void> {
    const child = this.child;
    this.child = null;
    // Killed first: a wedged mirror reader would keep its guest's QEMU (and QMP) frozen.
    await killCgroup(this.cgroup).catch(() => {});
    if (child?.pid !== undefined)
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
    }
    for (const t of this.targets) {
      const q = t.qemu;
      if (t.ramFd !== null) closeSync(t.ramFd);
      t.ramFd = null;
      // Another host VM's target: the export stays (its mirror reconnects to the next service).
      if (t.peer || !q?.isRunning) continue;
      if (t.spec.nic) await removeNetMirror(q.qmp, t.mirrorId).catch(() => {});
      if (t.spec.disk) {
        await this.closeView(t).catch(() => {});
        await stopNbdServer(q.qmp).catch(() => {});
        const node = `disk-${t.spec.disk}`;
        for (const b of await listDirtyBitmaps(q.qmp, node).catch(() => []))
          if (b.name?.startsWith(`sv${this.id}b`))
            await removeDirtyBitmap(q.qmp, node, b.name).catch(() => {});
      }
    }
  }

  /**
   * After an agent restart: kills what the predecessor's instance of this security VM left
   * (its service by `pid`'s process group, everything in its cgroup), takes its state off the
   * targets' adopted QEMUs, and starts it again. Returns the pids it killed.
   */
  async takeOver(pid: number | null): Promise<number[]> {
    const killed: number[] = [];
    if (pid !== null && isSecVmService(pid, this.id)) {
      killed.push(pid);
      try {
        process.kill(-pid, "SIGKILL");
      } catch {}
    }
    this.cgroup = createSecVmCgroup(`secvm-${this.netns.slice(5)}`, {
      cpus: this.req.cpus ?? 1,
      memoryMiB: this.req.memoryMiB ?? 512,
    });
    for (const p of cgroupPids(this.cgroup)) if (!killed.includes(p)) killed.push(p);
    await killCgroup(this.cgroup).catch(() => {});
    for (const t of this.targets) t.qemu = this.host.guests.get(t.spec.guestId)?.qemu ?? null;
    await this.teardownRun();
    await deleteNetns(this.netns).catch(() => {});
    const lost = this.req.targets.filter((t) => !t.via && !this.host.guests.get(t.guestId)?.qemu?.isRunning);
    if (lost.length > 0) {
      this.state = "failed";
      this.error = `after the agent restarted, target(s) ${lost.map((t) => t.guestId).join(", ")} do not run`;
      for (const t of lost)
        this.own(t, "critical", `target ${t.guestId} lost while the host-VM agent restarted`, {
          kind: "target-lost",
          qemuPid: null,
        });
      return killed;
    }
    await this.create();
    for (const t of this.targets)
      this.own(
        t.spec,
        "warning",
        `host-VM agent restarted: security VM ${this.id} started again (${killed.length} processes of its predecessor killed); alerts before the restart are not kept`,
        { kind: "secvm-recovered", killed: killed.length },
      );
    return killed;
  }

  async delete(): Promise<void> {
    if (this.watch) clearInterval(this.watch);
    this.watch = null;
    await this.cycle?.catch(() => {});
    this.state = "stopping";
    await this.teardownRun();
    await this.dropExports();
    await deleteNetns(this.netns).catch(() => {});
    await removeCgroup(this.cgroup).catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
    rmSync(join(SECVM_RUN_ROOT, `${this.netns.slice(5)}.log`), { force: true });
    this.state = "stopped";
  }

  /** Asks the targets' agents to take down what they exported to it (logged when they cannot). */
  private async dropExports(): Promise<void> {
    for (const t of this.targets)
      if (t.peer && t.exportId) {
        const id = t.exportId;
        t.exportId = null;
        await t.peer.deleteSecVmExport(id).catch((e: Error) => {
          if (!/404/.test(e.message))
            this.host.log.warn({ secvm: this.id, export: id, err: e.message }, "export not taken down");
        });
      }
  }

  /** Pids in its cgroup now (tests: nothing left after delete). */
  pids(): number[] {
    return cgroupPids(this.cgroup);
  }
}

/** Whether `pid` is the service of security VM `id` (not a reused pid of something else). */
function isSecVmService(pid: number, id: string): boolean {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    const env = readFileSync(`/proc/${pid}/environ`, "utf8");
    return cmd.includes("secvm-service") && env.split("\0").includes(`NESTCLOUD_SECVM=${id}`);
  } catch {
    return false;
  }
}

/** What a successor agent needs to start a security VM again. */
interface SecVmRecord {
  req: CreateSecVmRequest;
  pid: number | null;
}

export class SecVmManager {
  readonly vms = new Map<string, SecVm>();
  /** The security VMs' records (beside qemuDir: kept across agent restarts, not across deletes). */
  readonly recordDir: string;
  /** Which security VM of another host VM a guest of this one is exported to (exports.ts). */
  exportedTo: (guestId: string) => string | undefined = () => undefined;
  constructor(private readonly host: HostVm) {
    this.recordDir = join(dirname(host.cfg.qemuDir), "secvms");
  }

  of(id: string): SecVm {
    const v = this.vms.get(id);
    if (!v) throw new AgentError(404, "not_found", `no security VM ${id} on host VM ${this.host.where}`);
    return v;
  }

  private record(v: SecVm, pid: number | null): void {
    mkdirSync(this.recordDir, { recursive: true, mode: 0o700 });
    const f = join(this.recordDir, `${v.id}.json`);
    writeFileSync(`${f}.tmp`, JSON.stringify({ req: v.req, pid } satisfies SecVmRecord), { mode: 0o600 });
    renameSync(`${f}.tmp`, f);
  }

  private unrecord(id: string): void {
    rmSync(join(this.recordDir, `${id}.json`), { force: true });
  }

  private track(v: SecVm): void {
    v.onSpawn = (pid) => {
      if (this.vms.get(v.id) !== v) return;
      // A record that cannot be written costs a successor's recovery, never this start.
      try {
        this.record(v, pid ?? null);
      } catch (e) {
        this.host.log.warn({ secvm: v.id, err: (e as Error).message }, "security VM record not written");
      }
    };
  }

  async create(req: CreateSecVmRequest): Promise<SecVm> {
    if (this.vms.has(req.secvmId)) throw secvmErrors.exists(req.secvmId);
    for (const t of req.targets)
      for (const v of this.vms.values())
        if (v.req.targets.some((x) => x.guestId === t.guestId)) throw secvmErrors.watched(t.guestId, v.id);
    for (const t of req.targets) {
      const to = t.via ? undefined : this.exportedTo(t.guestId);
      if (to) throw secvmErrors.exported(t.guestId, to);
    }
    const v = new SecVm(req, this.host);
    v.check();
    this.vms.set(req.secvmId, v);
    this.record(v, null);
    this.track(v);
    try {
      await v.create();
    } catch (e) {
      this.vms.delete(req.secvmId);
      this.unrecord(req.secvmId);
      await v.delete().catch(() => {});
      throw e;
    }
    return v;
  }

  /**
   * At agent start, after the guests' QEMUs were adopted: every recorded security VM is
   * started again (see the header); one whose record is unreadable is dropped, logged.
   */
  async recover(): Promise<void> {
    let files: string[] = [];
    try {
      files = readdirSync(this.recordDir).filter((f) => f.endsWith(".json"));
    } catch {
      return;
    }
    for (const f of files) {
      let rec: SecVmRecord;
      try {
        rec = JSON.parse(readFileSync(join(this.recordDir, f), "utf8")) as SecVmRecord;
        if (!Value.Check(CreateSecVmBody, rec.req) || !(rec.pid === null || Number.isSafeInteger(rec.pid)))
          throw new Error("not a security VM record");
      } catch (e) {
        this.host.log.warn({ file: f, err: (e as Error).message }, "security VM record dropped");
        rmSync(join(this.recordDir, f), { force: true });
        continue;
      }
      const v = new SecVm(rec.req, this.host);
      this.vms.set(v.id, v);
      this.track(v);
      try {
        const killed = await v.takeOver(rec.pid);
        this.host.log.warn(
          { secvm: v.id, killed, state: v.state },
          "security VM of a previous agent started again",
        );
      } catch (e) {
        v.state = "failed";
        v.error = `not started again after the agent restarted: ${(e as Error).message}`;
        this.host.log.error({ secvm: v.id, err: v.error }, "security VM not recovered");
      }
    }
  }

  /** A guest is about to migrate away: the disk views of it are closed (SecVm.departing). */
  async departing(guestId: string): Promise<void> {
    await Promise.all([...this.vms.values()].map((v) => v.departing(guestId)));
  }

  async delete(id: string): Promise<void> {
    const v = this.of(id);
    await v.delete();
    this.vms.delete(id);
    this.unrecord(id);
  }

  async shutdown(): Promise<void> {
    for (const id of [...this.vms.keys()]) await this.delete(id).catch(() => {});
    releaseHierarchies();
  }
}

/** For tests: whether a path exists (the folder is gone after delete). */
export const secvmDirExists = (v: SecVm) => existsSync(v.dir);

/** How long an arriving target's QEMU may take to load the last of its incoming pre-copy. */
const ARRIVING_LOAD_MS = 20_000;

/**
 * Waits until an incoming QEMU has loaded the whole stream (QEMU leaves `inmigrate`; with -S it
 * then waits `paused`): its RAM file is the guest's state at the switchover only from then.
 */
async function loaded(q: QemuProcess, guestId: string): Promise<void> {
  const end = Date.now() + ARRIVING_LOAD_MS;
  for (;;) {
    if (!q.isRunning) throw secvmErrors.notRunning(guestId);
    const st = await q.qmp.queryStatus();
    if (st.status !== "inmigrate") return;
    if (Date.now() > end)
      throw conflict(`guest ${guestId}'s incoming QEMU still loads after ${ARRIVING_LOAD_MS} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
