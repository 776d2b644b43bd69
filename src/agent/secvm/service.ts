/**
 * A security VM's service: the process the host-VM agent starts for it (`nestcloud-agent.js
 * secvm-service`), inside the security VM's network namespace and cgroup, with an IPC channel
 * to the agent and, as inherited descriptors, its targets' RAM files (read-only). It runs the
 * monitors against its targets and sends their alerts to the agent, which keeps the log.
 *
 * Privileges: it starts as root only to start the network monitors' TAP writers and Suricata
 * in its namespace; then it drops to its own uid and gid (no supplementary groups) before it
 * reads anything of a guest. From then on it can reach only what the agent handed it: the RAM
 * descriptors, the NBD sockets and mirror sockets in its private folder (0700, its uid).
 * Another security VM's folder, any guest's RAM file in the pool (0600 root) and the agent's
 * token are out of its reach.
 *
 * Bounded towards the agent: at most MAX_UNSENT alerts waiting in the IPC channel; beyond that
 * alerts are dropped, counted, and the count is sent as an alert of its own once the channel
 * drains.
 */
import { fstatSync, readFileSync, readSync } from "node:fs";
import {
  type Alert,
  alert,
  DiskMonitor,
  expectClient,
  expectServer,
  MemoryMonitor,
  type MemorySource,
  type NbdTransport,
  NetworkMonitor,
  tlsTransport,
  unixTransport,
} from "../../monitor/index.ts";
import {
  connectRemoteMemory,
  MAX_BATCH,
  MemoryError,
  type PhysicalMemory,
  type PhysRange,
  RamFileMemory,
  ramLayout,
} from "../../vmi/index.ts";
import {
  type AgentMessage,
  type DiskAccess,
  type DiskViewAnswer,
  type Endpoint,
  MAX_BASELINE_RECORDS,
  type MonitorReport,
  type ServiceConfig,
  type ServiceMessage,
  type ServiceTarget,
  targetFitsChannel,
} from "./protocol.ts";

const MAX_UNSENT = 1000;
/** How soon a disk view asked for too early (the target still arriving) is asked again. */
const WAIT_MS = 250;

/** An inherited descriptor of a RAM file as physical memory (pread; never reopened by path). */
class FdMemory implements PhysicalMemory {
  readonly size: number;
  constructor(private readonly fd: number) {
    this.size = fstatSync(fd).size;
  }
  async read(ranges: readonly PhysRange[]): Promise<Uint8Array[]> {
    if (ranges.length > MAX_BATCH) throw new MemoryError("MEM_BAD_REQUEST", `batch of ${ranges.length}`);
    return ranges.map((r) => {
      if (r.addr < 0 || r.len < 0 || r.addr + r.len > this.size)
        throw new MemoryError("MEM_OUT_OF_RANGE", `read at ${r.addr}+${r.len} beyond ${this.size}`);
      const b = new Uint8Array(r.len);
      let n: number;
      try {
        n = readSync(this.fd, b, 0, r.len, r.addr);
      } catch (e) {
        throw new MemoryError("MEM_READ_FAILED", `pread: ${(e as Error).message}`, { cause: e });
      }
      if (n !== r.len) throw new MemoryError("MEM_READ_FAILED", `short read at ${r.addr}`);
      return b;
    });
  }
}

/** The RAM descriptor as the memory monitor's source (q35 layout). */
export function fdMemorySource(fd: number): MemorySource {
  const file = new FdMemory(fd);
  return { memory: new RamFileMemory(ramLayout("q35", file.size), file), close: () => {} };
}

/** The security VM's PEM credential, read while the service may still read its folder as root. */
interface Pem {
  ca: string;
  cert: string;
  key: string;
}

/**
 * The target's memory from the page server of its server, over TLS: the server must hold a
 * page-server certificate; ours names the target. The TLS session is kept for the reconnects
 * after a loss, and the guest's size is known, so the first walk travels with the handshake.
 */
export function pageServerSource(
  pem: Pem,
  guestId: string,
  at: Endpoint & { size: number },
  sessions = new Map<string, Buffer>(),
): () => Promise<MemorySource> {
  const tls = { ...pem, verifyServer: expectServer("page-server"), sessions, guestSize: at.size };
  return async () => {
    const m = await connectRemoteMemory({ host: at.host, port: at.port, guest: guestId, tls });
    return { memory: m, close: () => m.close() };
  };
}

/** The NBD transport to a target's disk: its QEMU's unix socket, or the relay of its server. */
export function diskTransport(pem: Pem | null, guestId: string, d: DiskAccess): NbdTransport {
  if ("socket" in d) return unixTransport(d.socket);
  if (!pem) throw new Error("a remote disk needs the security VM's TLS credential");
  // The relay presents the target QEMU's certificate: it must name this guest.
  return tlsTransport(d.relay.host, d.relay.port, { ...pem, verifyServer: expectServer("qemu", guestId) });
}

function send(m: ServiceMessage, done?: () => void): void {
  process.send?.(m, undefined, undefined, () => done?.());
}

class Service {
  private unsent = 0;
  private dropped = 0;
  private reqs = 0;
  private readonly pending = new Map<number, (a: DiskViewAnswer) => void>();
  private readonly memory = new Map<string, MemoryMonitor>();
  private readonly disk = new Map<
    string,
    { monitor: DiskMonitor; rounds: number; lastMs: number | null; lost: boolean }
  >();
  private readonly network = new Map<string, NetworkMonitor>();
  private timers: NodeJS.Timeout[] = [];

  private readonly pem: Pem | null;

  constructor(private readonly c: ServiceConfig) {
    for (const t of c.targets)
      if (!targetFitsChannel(t, c.channel))
        throw new Error(`target ${t.guestId}: its accesses do not fit the ${c.channel} channel`);
    this.pem = c.tls
      ? {
          ca: readFileSync(c.tls.ca, "utf8"),
          cert: readFileSync(c.tls.cert, "utf8"),
          key: readFileSync(c.tls.key, "utf8"),
        }
      : null;
    if (c.channel === "remote" && !this.pem) throw new Error("the remote channel needs a TLS credential");
  }

  onAgent(m: AgentMessage): void {
    if (m.type === "disk-view") {
      const r = this.pending.get(m.reqId);
      this.pending.delete(m.reqId);
      r?.(m);
    } else if (m.type === "disk-baseline-get") {
      // Records after its last finished round, or the ones it took over and has not yet checked
      // against (none: null); too many: null, never a prefix.
      const d = this.disk.get(m.guestId);
      const files = d && d.monitor.baseline.size > 0 ? [...d.monitor.baseline.values()] : null;
      send({
        type: "disk-baseline",
        reqId: m.reqId,
        guestId: m.guestId,
        rounds: d?.rounds ?? 0,
        files: files && files.length <= MAX_BASELINE_RECORDS ? files : null,
      });
    }
  }

  /** Alerts to the agent, bounded: past MAX_UNSENT waiting, dropped and counted. */
  alert(a: Alert): void {
    if (this.unsent >= MAX_UNSENT) {
      this.dropped++;
      return;
    }
    this.unsent++;
    send({ type: "alert", alert: a }, () => {
      this.unsent--;
      if (this.dropped > 0 && this.unsent < MAX_UNSENT / 2) {
        const n = this.dropped;
        this.dropped = 0;
        this.alert(
          alert({
            time: Date.now(),
            target: a.target,
            monitor: a.monitor,
            channel: this.c.channel,
            severity: "warning",
            summary: `security VM dropped ${n} alerts: the agent did not take them fast enough`,
            evidence: { kind: "alerts-dropped", dropped: n },
          }),
        );
      }
    });
  }

  private ask(
    type: "disk-view-open" | "disk-view-close",
    guestId: string,
    timeoutMs = 120_000,
  ): Promise<DiskViewAnswer> {
    const reqId = ++this.reqs;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(reqId);
        resolve({
          type: "disk-view",
          reqId,
          ok: false,
          error: `no answer from the agent in ${timeoutMs} ms`,
        });
      }, timeoutMs);
      this.pending.set(reqId, (a) => {
        clearTimeout(timer);
        resolve(a);
      });
      send({ type, reqId, guestId });
    });
  }

  /** Network monitors first: they need root (TAP device, Suricata in the namespace). */
  async startPrivileged(): Promise<void> {
    for (const t of this.c.targets) {
      if (!t.nic) continue;
      const pem = this.pem;
      const listen =
        "mirrorSocket" in t.nic
          ? { type: "unix" as const, path: t.nic.mirrorSocket }
          : pem
            ? {
                type: "tls" as const,
                ...t.nic.listen,
                // Only the target's QEMU (its certificate names the guest) may feed this monitor.
                tls: { ...pem, authorize: expectClient("qemu", t.guestId) },
              }
            : null;
      if (!listen) throw new Error("a remote mirror needs the security VM's TLS credential");
      const mon = await NetworkMonitor.start({
        target: t.guestId,
        channel: this.c.channel,
        runDir: `${this.c.dir}/net-${t.guestId}`,
        listen,
        netns: this.c.netns,
        id: t.nic.monitorId,
        ruleFiles: this.c.ruleFiles,
        onAlert: (a) => this.alert(a),
      });
      this.network.set(t.guestId, mon);
    }
  }

  start(): void {
    for (const t of this.c.targets) {
      if (t.memory) this.startMemory(t);
      if (t.disk) this.startDisk(t, diskTransport(this.pem, t.guestId, t.disk));
    }
    const hb = setInterval(() => this.beat(), this.c.heartbeatMs);
    this.timers.push(hb);
  }

  private beat(): void {
    send({
      type: "heartbeat",
      rssKiB: Math.round(process.memoryUsage.rss() / 1024),
      monitors: this.reports(),
    });
  }

  private startMemory(t: ServiceTarget): void {
    const access = t.memory;
    if (!access) return;
    let open: () => Promise<MemorySource>;
    if ("fd" in access) {
      const fd = access.fd;
      open = async () => fdMemorySource(fd);
    } else open = pageServerSource(this.pem as Pem, t.guestId, access.pageServer);
    const m = new MemoryMonitor({
      target: t.guestId,
      channel: this.c.channel,
      open,
      periodMs: this.c.memoryPeriodMs,
      onAlert: (a) => this.alert(a),
      // The first round reported at once, not at the next heartbeat: a pre-copy's destination
      // may wait paused for this monitor's baseline.
      onRound: (r) => {
        if (r.round === 1) this.beat();
      },
    });
    this.memory.set(t.guestId, m);
    m.start();
  }

  private startDisk(t: ServiceTarget, transport: NbdTransport): void {
    const monitor = new DiskMonitor({
      target: t.guestId,
      channel: this.c.channel,
      clamav:
        this.c.clamavDatabases.length > 0
          ? { databases: this.c.clamavDatabases, scratchParent: `${this.c.dir}/scratch` }
          : null,
      onAlert: (a) => this.alert(a),
    });
    // Another monitor's baseline of this disk: the first round reports what changed since.
    if (t.diskBaseline) monitor.seed(t.diskBaseline);
    const d = { monitor, rounds: 0, lastMs: null as number | null, lost: false };
    this.disk.set(t.guestId, d);
    const loop = async () => {
      const open = await this.ask("disk-view-open", t.guestId);
      if (!open.ok && open.wait) {
        // The target is still arriving here: its first round comes once it runs.
        this.timers.push(setTimeout(() => void loop(), WAIT_MS));
        return;
      }
      if (!open.ok) {
        if (!d.lost)
          this.alert(
            alert({
              time: Date.now(),
              target: t.guestId,
              monitor: "disk",
              channel: this.c.channel,
              severity: "critical",
              summary: `disk monitor cannot get a view of the disk: ${open.error}`,
              evidence: { kind: "source-lost", error: open.error },
            }),
          );
        d.lost = true;
      } else {
        d.lost = false;
        try {
          const r = await monitor.round({
            transport,
            exportName: open.exportName,
            dirtyBitmap: open.dirtyBitmap,
          });
          d.rounds++;
          d.lastMs = r.ms;
        } catch {
          // The monitor alerted the failed round; the next one is full.
        } finally {
          await this.ask("disk-view-close", t.guestId);
        }
      }
      this.timers.push(setTimeout(() => void loop(), this.c.diskPeriodMs));
    };
    void loop();
  }

  reports(): MonitorReport[] {
    const out: MonitorReport[] = [];
    for (const [guestId, m] of this.memory) {
      const s = m.stats();
      out.push({
        guestId,
        monitor: "memory",
        state: s.lost ? "lost" : s.rounds > 0 ? "running" : "starting",
        rounds: s.rounds,
        lastRoundMs: s.lastRoundMs,
      });
    }
    for (const [guestId, d] of this.disk)
      out.push({
        guestId,
        monitor: "disk",
        state: d.lost ? "lost" : d.rounds > 0 ? "running" : "starting",
        rounds: d.rounds,
        lastRoundMs: d.lastMs,
      });
    for (const [guestId, n] of this.network) {
      const s = n.stats();
      out.push({
        guestId,
        monitor: "network",
        state: s.receiver.open > 0 ? "running" : "starting",
        rounds: s.receiver.frames,
        lastRoundMs: null,
      });
    }
    return out;
  }
}

/** The service's entry: waits for its configuration, starts, drops privileges, runs. */
export async function runSecVmService(): Promise<void> {
  if (!process.send) throw new Error("secvm-service runs only as a child of a host-VM agent (IPC channel)");
  // The agent going away (crash or stop) ends the service: its cgroup is killed anyway.
  process.on("disconnect", () => process.exit(0));
  const config = await new Promise<ServiceConfig>((resolve) => {
    process.once("message", (m) => resolve(m as ServiceConfig));
  });
  const s = new Service(config);
  process.on("message", (m) => s.onAgent(m as AgentMessage));
  await s.startPrivileged();
  process.setgroups?.([]);
  process.setgid?.(config.gid);
  process.setuid?.(config.uid);
  s.start();
  send({ type: "ready" });
}
