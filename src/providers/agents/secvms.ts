/**
 * Security VMs' monitors through the host-VM agents (issue 13). Each pair (security VM,
 * target) is one agent security VM (/v1/secvms, issue 12's sandboxed service) running the
 * memory monitor, and the disk and network monitors when the target has a data disk and a NIC
 * (the security VM's choice of monitors permitting), beside the target, in the host VM that
 * runs it: the agents' service reads a target's RAM file only on its own host VM.
 *
 * Disk and network across a move: the new monitor takes the old one's disk baseline over (its
 * first round reports every change since the old one's last round), and a pair watching a NIC
 * has its new monitor, with the mirror on the destination's QEMU, started before the guest
 * resumes there, across an instant handover as across a pre-copy (mirrorBeforeResume).
 *
 * Following placement, make before break: when a target runs on another host VM than its
 * monitor (after an instant handover or a pre-copy), the monitor is started at the target's
 * new host VM first, and only once it has done a round is the old one drained and removed.
 * Across an instant handover the old monitor never stops seeing the guest (its descriptor is of
 * the RAM file in the server's pool, which the destination maps as it is): nothing goes
 * unobserved. Across a pre-copy the old descriptor is of the source's RAM file, frozen at the
 * switchover, so the new monitor is made before the destination resumes (beforeResume, called
 * by the migration between the source's completion and the destination's finish): its
 * baseline is read from the paused destination's RAM, which is the source's final state, and
 * the old monitor does its last round on the stopped source; everything up to the switchover
 * is the old one's to report and nothing after it is in the new baseline. The two are done
 * side by side (both read the state at the switchover). The pause this adds is bounded
 * (HOLD_BUDGET_MS); past it the migration goes on and the switch is made after the guest runs
 * (follow), as across a failure to attach. What keeps it short under load: the new service
 * loads only its own modules (agent/secvm/entry.ts) and is lent the control path's priority
 * until its first round (agent/secvm/manager.ts).
 */
import { createHash } from "node:crypto";
import type {
  AlertPageAnswer,
  CreateSecVmRequest,
  DiskBaselineAnswer,
  GuestStatus,
  HostVmAgentClient,
  SecVmTarget,
} from "../../agent/index.ts";
import { type Alert, alert, CHANNELS, type Evidence, MONITOR_KINDS } from "../../monitor/index.ts";
import type {
  MonitorAnchor,
  MonitorSwitch,
  SecurityVmMonitors,
  SecurityVmOptions,
  SecurityVmSpec,
} from "../types.ts";
import { type Agents, providerError } from "./agents.ts";

/** How long a new monitor may take to do its first round before the switch is given up. */
const FIRST_ROUND_MS = 90_000;
/** Also the agent's heartbeat period: overlap() relies on the period being no shorter. */
const MEMORY_PERIOD_MS = 1000;
/** How long the old monitor is kept for its overlapping round (rounds take 0.2-3 s under TCG). */
const OVERLAP_MS = 30_000;
/**
 * The most a pre-copy's destination is held paused for the attach. Under the source's own
 * settling (it resolves a completed move nobody finished after two leases, 30 s) with room
 * for the finish itself.
 */
export const HOLD_BUDGET_MS = 20_000;
/** The destination's lease is renewed this often while it is held (the orchestrator stopped). */
const HOLD_LEASE_EVERY_MS = 2000;

/** Keeps a held destination's lease while the orchestrator waits for the attach (clearInterval ends it). */
function holdLease(dst: HostVmAgentClient, migrationId: string): ReturnType<typeof setInterval> {
  return setInterval(
    () => void dst.incoming(migrationId, true, HOLD_LEASE_EVERY_MS).catch(() => {}),
    HOLD_LEASE_EVERY_MS,
  );
}

/**
 * How long a target ran unobserved across a monitor's move made after it ran (follow): an
 * instant handover leaves the old monitor's view live (the same RAM file), so nothing; any
 * other move froze the old view at the switchover, so from the move's completion (`landed`,
 * wall ms) until the new monitor's baseline (`madeAt`). null: the move is not known.
 */
export function unobservedMs(
  landed: { readonly mechanism: string; readonly at: number } | undefined,
  madeAt: number,
): number | null {
  if (!landed) return null;
  return landed.mechanism === "instant" ? 0 : Math.max(0, madeAt - landed.at);
}

/** Between two disk rounds of a pair's monitor (a round under TCG takes 1-5 s). */
const DISK_PERIOD_MS = 3000;

/**
 * What a pair's monitor watches of its target: its memory, its first writable data disk and
 * its first NIC, each when the security VM's monitors include it (default all three).
 */
export function agentTarget(
  target: string,
  devices: GuestStatus["devices"],
  monitors: SecurityVmOptions["monitors"] = MONITOR_KINDS,
): SecVmTarget {
  const disk = devices.find((d) => d.kind === "disk" && !d.readOnly);
  const nic = devices.find((d) => d.kind === "nic");
  return {
    guestId: target,
    memory: monitors.includes("memory"),
    ...(disk && monitors.includes("disk") ? { disk: disk.id } : {}),
    ...(nic && monitors.includes("network") ? { nic: nic.id } : {}),
  };
}

type FileRecordList = NonNullable<DiskBaselineAnswer["files"]>;

/** The agent's id of a pair's monitor (an agent's ids are short: they name namespaces). */
export function agentSecVmId(secvm: string, target: string): string {
  const h = BigInt(`0x${createHash("sha256").update(`${secvm}\u0000${target}`).digest("hex").slice(0, 12)}`);
  return `f${h.toString(36).padStart(6, "0").slice(-6)}`;
}

interface Pair {
  readonly secvm: string;
  readonly target: string;
  readonly agentId: string;
  /** The security VM's options and what its monitor watches of the target (from its devices). */
  options: SecurityVmOptions;
  watch: SecVmTarget;
  hostVm: string | null;
  /** The agent's alert sequence read so far. */
  cursor: number;
  state: string;
  rounds: number;
  /** Bumped on each switch: a drain that read the old monitor does not move the new cursor. */
  gen: number;
  /** A switch made before a pre-copy's destination resumed, waiting for the move's outcome. */
  pending?: PendingSwitch;
  lastMove?: MonitorSwitch;
}

interface PendingSwitch {
  readonly migrationId: string;
  readonly from: string;
  readonly to: string;
  /** The attach (made, baseline, the old one's last round) done within the budget. */
  ready: boolean;
  makeMs: number;
  heldMs: number;
  /** The attach's work (it may go on past the budget). */
  work: Promise<void>;
}

/** A pre-copy about to finish: where its guest is and goes (the controller's host-VM ids). */
export interface ArrivingMove {
  readonly migrationId: string;
  readonly guest: string;
  readonly from: string;
  readonly to: string;
  /** Default pre-copy. */
  readonly mechanism?: "precopy" | "instant";
}

export class AgentSecurityVms implements SecurityVmMonitors {
  private readonly pairs = new Map<string, Pair>();
  /** Alerts read from monitors already removed (their last page), waiting for drain(). */
  private readonly retired: { secvm: string; alerts: Alert[] }[] = [];
  /** Switches made around a migration's finish, reported by the next follow(). */
  private readonly switched: MonitorSwitch[] = [];
  /** Each guest's last completed move (mechanism, wall ms), for the gap of a follow after it. */
  private readonly landed = new Map<string, { mechanism: string; at: number }>();
  /** Monitors started before an instant handover's destination resumed, by migration. */
  private readonly premade = new Map<string, { p: Pair; to: string }[]>();

  constructor(
    private readonly agents: Agents,
    private readonly log: (msg: string) => void,
  ) {}

  private clientOf(hostVm: string): HostVmAgentClient {
    return this.agents.client(this.agents.host(hostVm));
  }

  async ensure(spec: SecurityVmSpec): Promise<void> {
    for (const target of spec.targets) {
      const key = `${spec.id}\u0000${target}`;
      const p: Pair = this.pairs.get(key) ?? {
        secvm: spec.id,
        target,
        agentId: agentSecVmId(spec.id, target),
        options: spec,
        watch: { guestId: target, memory: true },
        hostVm: null,
        cursor: 0,
        state: "new",
        rounds: 0,
        gen: 0,
      };
      this.pairs.set(key, p);
      if (p.hostVm) continue;
      const at = await this.agents.locate(target);
      if (!at || at.guest.state !== "running") continue;
      const c = this.agents.client(at.host);
      p.options = spec;
      p.watch = agentTarget(target, at.guest.devices, spec.monitors);
      // A monitor a previous controller started there is adopted, not made twice.
      const known = (await c.secVms().catch(() => [])).find((s) => s.secvmId === p.agentId);
      if (!known) {
        try {
          await c.createSecVm(this.request(p));
        } catch (e) {
          throw providerError(
            e,
            `starting security VM ${spec.id}'s monitor of ${target} on ${at.host.hostVm}`,
          );
        }
      }
      p.hostVm = at.host.hostVm;
      p.state = "starting";
      this.log(`security VM ${spec.id}: monitor of ${target} on ${p.hostVm} (${p.agentId})`);
    }
  }

  /** The agent's security VM of a pair (what it watches, with what, how often). */
  private request(
    p: Pair,
    extra: Pick<CreateSecVmRequest, "arriving" | "diskBaselines"> = {},
  ): CreateSecVmRequest {
    const o = p.options;
    return {
      secvmId: p.agentId,
      targets: [p.watch],
      memoryPeriodMs: MEMORY_PERIOD_MS,
      ...(p.watch.disk ? { diskPeriodMs: DISK_PERIOD_MS } : {}),
      ...(o.signatures?.length && p.watch.disk ? { signatures: [...o.signatures] } : {}),
      ...(o.rules !== undefined && p.watch.nic ? { rules: o.rules } : {}),
      ...(extra.arriving ? { arriving: true } : {}),
      ...(extra.diskBaselines ? { diskBaselines: extra.diskBaselines } : {}),
    };
  }

  async remove(id: string): Promise<void> {
    for (const [key, p] of this.pairs) {
      if (p.secvm !== id) continue;
      if (p.hostVm) await this.retire(p, p.hostVm);
      this.pairs.delete(key);
    }
  }

  /** Reads a monitor's last alerts and deletes it on its agent. */
  private async retire(p: Pair, hostVm: string): Promise<void> {
    const c = this.clientOf(hostVm);
    const page = await c.secVmAlerts(p.agentId, { after: p.cursor, limit: 1000 }).catch(() => undefined);
    if (page?.alerts.length) this.retired.push({ secvm: p.secvm, alerts: page.alerts.map(stripSeq) });
    await c.deleteSecVm(p.agentId).catch((e) => {
      // A 404: it is gone already (its host VM was released, or a previous controller removed it).
      if (!/404|no security VM/.test(String(e))) throw providerError(e, `removing monitor ${p.agentId}`);
    });
  }

  /**
   * A pre-copy of `m.guest` completed (its source stopped, postmigrate) and its destination
   * waits paused: each of its monitors is made at the destination now, its baseline read from
   * the destination's RAM, and the old monitor's last round is done on the source's. Never
   * throws and takes at most HOLD_BUDGET_MS (the destination's lease renewed meanwhile); the
   * switch itself is completed or undone by settled() once the move's outcome is known.
   */
  async beforeResume(m: ArrivingMove): Promise<void> {
    if (m.mechanism === "instant") return this.mirrorBeforeResume(m);
    const pairs = [...this.pairs.values()].filter(
      (p) => p.target === m.guest && p.hostVm === m.from && !p.pending,
    );
    if (pairs.length === 0) return;
    const t0 = Date.now();
    const end = t0 + HOLD_BUDGET_MS;
    let dst: HostVmAgentClient;
    try {
      dst = this.clientOf(m.to);
    } catch (e) {
      this.log(
        `security VMs: no agent for ${m.to} (${(e as Error).message}): monitors follow after the move`,
      );
      return;
    }
    const lease = holdLease(dst, m.migrationId);
    try {
      await Promise.all(
        pairs.map(async (p) => {
          // The old monitor's rounds counted from now: the source stopped before this call, so
          // its round r0 + 2 starts after the stop and reads the guest's final state.
          const r0 = await this.memoryRounds(p, m.from);
          const pending: PendingSwitch = {
            migrationId: m.migrationId,
            from: m.from,
            to: m.to,
            ready: false,
            makeMs: 0,
            heldMs: 0,
            work: Promise.resolve(),
          };
          p.pending = pending;
          // The new monitor's baseline and the old one's last round read the same state (the
          // paused destination's RAM, the stopped source's): neither waits for the other.
          const made = this.make(p, dst, m.to, end, true).then(() => {
            pending.makeMs = Date.now() - t0;
          });
          const last = this.overlap(p, m.from, r0, end).then((ok) => {
            if (!ok) throw new Error(`the old monitor on ${m.from} did not finish its last round in time`);
          });
          // Both ended before the work is (settled() removes what make() made once it is done).
          pending.work = Promise.allSettled([made, last]).then((rs) => {
            for (const r of rs) if (r.status === "rejected") throw r.reason;
          });
          let timer: NodeJS.Timeout | undefined;
          const ok = await Promise.race([
            pending.work.then(
              () => true,
              (e: unknown) => {
                this.log(
                  `security VM ${p.secvm}: attaching to ${p.target} before it resumes on ${m.to} failed: ${(e as Error).message}`,
                );
                return false;
              },
            ),
            new Promise<false>((r) => {
              timer = setTimeout(() => r(false), Math.max(0, end - Date.now()));
            }),
          ]);
          clearTimeout(timer);
          pending.work = pending.work.catch(() => {});
          pending.ready = ok;
          pending.heldMs = Date.now() - t0;
          if (!ok)
            this.log(
              `security VM ${p.secvm}: monitor of ${p.target} not attached before it resumes on ${m.to} ` +
                `(${pending.heldMs} ms): it follows after the move`,
            );
        }),
      );
    } finally {
      clearInterval(lease);
    }
  }

  /**
   * An instant handover about to finish: the old monitor keeps reading the guest's RAM file,
   * which the destination maps as it is, and makes its overlap round after the move (follow),
   * but its mirror is on the source's QEMU, which stops now. So the new monitor of each pair
   * that watches a NIC is started at the destination first, its mirror added to the paused
   * destination QEMU: no frame of the guest's there goes uninspected. Its memory baseline and
   * the old monitor's removal come after the guest runs (follow). Bounded by HOLD_BUDGET_MS
   * and never throws: past it, the monitor follows after the move.
   */
  private async mirrorBeforeResume(m: ArrivingMove): Promise<void> {
    const pairs = [...this.pairs.values()].filter(
      (p) => p.target === m.guest && p.hostVm === m.from && !p.pending && p.watch.nic,
    );
    if (pairs.length === 0) return;
    const t0 = Date.now();
    let dst: HostVmAgentClient;
    try {
      dst = this.clientOf(m.to);
    } catch {
      return;
    }
    const lease = holdLease(dst, m.migrationId);
    try {
      await Promise.all(
        pairs.map(async (p) => {
          this.premade.set(m.migrationId, [...(this.premade.get(m.migrationId) ?? []), { p, to: m.to }]);
          const made = this.create(p, dst, true).then(
            () => true,
            (e: unknown) => {
              this.log(
                `security VM ${p.secvm}: mirror of ${p.target} not added on ${m.to}: ${(e as Error).message}`,
              );
              return false;
            },
          );
          let timer: NodeJS.Timeout | undefined;
          const ok = await Promise.race([
            made,
            new Promise<false>((r) => {
              timer = setTimeout(() => r(false), HOLD_BUDGET_MS);
            }),
          ]);
          clearTimeout(timer);
          this.log(
            `security VM ${p.secvm}: monitor of ${p.target} ${ok ? "started" : "not started"} on ${m.to} ` +
              `before it resumes (${Date.now() - t0} ms)`,
          );
        }),
      );
    } finally {
      clearInterval(lease);
    }
  }

  /**
   * The outcome of a move beforeResume attached for: the destination runs the guest (the old
   * monitor is retired, the new one is the pair's), or the guest stayed at the source (the new
   * monitor is removed; the old one never stopped watching it).
   */
  async settled(
    migrationId: string,
    guestAt: "source" | "destination" | "unknown",
    move?: { guest: string; mechanism: string },
  ): Promise<void> {
    if (move && guestAt === "destination")
      this.landed.set(move.guest, { mechanism: move.mechanism, at: Date.now() });
    // Monitors started before an instant handover's destination resumed: follow() takes them
    // over where the guest runs; back at the source they go.
    const pre = this.premade.get(migrationId) ?? [];
    this.premade.delete(migrationId);
    if (guestAt === "source")
      for (const { p, to } of pre)
        await this.clientOf(to)
          .deleteSecVm(p.agentId)
          .catch(() => {});
    for (const p of this.pairs.values()) {
      const w = p.pending;
      if (!w || w.migrationId !== migrationId) continue;
      if (guestAt === "destination" && w.ready) {
        await this.retire(p, w.from).catch((e) =>
          this.log(`security VM ${p.secvm}: removing the old monitor on ${w.from}: ${(e as Error).message}`),
        );
        this.switchTo(p, w.to);
        const sw: MonitorSwitch = {
          secvm: p.secvm,
          target: p.target,
          from: w.from,
          to: w.to,
          makeMs: w.makeMs,
          heldMs: w.heldMs,
          // Attached before it resumed: everything up to the switchover was the old one's.
          gapMs: 0,
        };
        p.lastMove = sw;
        this.switched.push(sw);
        this.log(
          `security VM ${p.secvm}: monitor of ${p.target} moved ${w.from} -> ${w.to} before it resumed ` +
            `(made in ${w.makeMs} ms, destination held ${w.heldMs} ms)`,
        );
      } else if (guestAt === "source") {
        await w.work;
        await this.clientOf(w.to)
          .deleteSecVm(p.agentId)
          .catch(() => {});
        this.log(`security VM ${p.secvm}: ${p.target} stayed on ${w.from}; its monitor there goes on`);
      }
      // Otherwise (not attached in time, or the outcome unknown) follow() settles it where it runs.
      p.pending = undefined;
    }
  }

  private switchTo(p: Pair, hostVm: string): void {
    p.hostVm = hostVm;
    p.cursor = 0;
    p.gen++;
    p.state = "running";
  }

  /**
   * Starts the pair's monitor at `to` unless it runs there, with the disk baseline of the
   * monitor it replaces (its first round then reports every change since that one's last
   * round; without it, a fresh baseline would take them in unseen).
   */
  private async create(p: Pair, to: HostVmAgentClient, arriving: boolean): Promise<void> {
    const known = (await to.secVms().catch(() => [])).some((s) => s.secvmId === p.agentId);
    if (known) return;
    let files: FileRecordList | null = null;
    if (p.watch.disk && p.hostVm)
      files = await this.clientOf(p.hostVm)
        .secVmDiskBaseline(p.agentId, p.target)
        .then(
          (b) => b.files,
          (e: Error) => {
            this.log(`security VM ${p.secvm}: no disk baseline of ${p.target} to hand over: ${e.message}`);
            return null;
          },
        );
    await to.createSecVm(
      this.request(p, {
        ...(arriving ? { arriving: true } : {}),
        ...(files ? { diskBaselines: [{ guestId: p.target, files }] } : {}),
      }),
    );
  }

  /** Starts the pair's monitor on `hostVm` (unless it runs there) and waits for its first round. */
  private async make(p: Pair, to: HostVmAgentClient, hostVm: string, end: number, arriving = false) {
    await this.create(p, to, arriving);
    // Made: its baseline taken (a round that read the guest; a failed round counts as a
    // round too, but leaves the monitor "lost"). Until then the old monitor stays.
    for (;;) {
      // An unanswered status (a loaded agent) is asked again, within the bound.
      const st = await to.secVm(p.agentId).catch((e: Error) => {
        if (Date.now() > end) throw e;
        return undefined;
      });
      if (!st) {
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      if (st.monitors.some((m) => m.monitor === "memory" && m.rounds > 0 && m.state === "running")) return;
      if (st.state === "failed" || Date.now() > end)
        throw new Error(
          `monitor ${p.agentId} of ${p.target} on ${hostVm}: ${st.state}, no round (${st.error ?? "timeout"})`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async follow(): Promise<MonitorSwitch[]> {
    const done = this.switched.splice(0);
    const moved = [...this.pairs.values()].filter((p) => p.hostVm && !p.pending);
    if (moved.length === 0) return done;
    // Where each target runs (a copy mid-move, paused or incoming, is not where it runs).
    const placed = new Map<string, { hostVm: string }>();
    for (const s of await this.agents.statuses())
      for (const g of s.status?.guests ?? [])
        if (g.state === "running") placed.set(g.guestId, { hostVm: s.host.hostVm });
    const out: MonitorSwitch[] = [];
    for (const p of moved) {
      const now = placed.get(p.target);
      const from = p.hostVm as string;
      if (!now || now.hostVm === from) {
        await this.refresh(p);
        continue;
      }
      const t0 = Date.now();
      await this.make(p, this.clientOf(now.hostVm), now.hostVm, t0 + FIRST_ROUND_MS);
      const madeAt = Date.now();
      const makeMs = madeAt - t0;
      const gapMs = unobservedMs(this.landed.get(p.target), madeAt);
      if (!(await this.overlap(p, from, await this.memoryRounds(p, from), Date.now() + OVERLAP_MS)))
        this.log(
          `security VM ${p.secvm}: old monitor of ${p.target} on ${from} did no round in ${OVERLAP_MS} ms`,
        );
      await this.retire(p, from);
      this.switchTo(p, now.hostVm);
      this.log(
        `security VM ${p.secvm}: monitor of ${p.target} moved ${from} -> ${now.hostVm} (made in ${makeMs} ms)`,
      );
      const sw: MonitorSwitch = {
        secvm: p.secvm,
        target: p.target,
        from,
        to: now.hostVm,
        makeMs,
        heldMs: null,
        gapMs,
      };
      p.lastMove = sw;
      out.push(sw);
    }
    return [...done, ...out];
  }

  /** The old monitor's memory rounds now (undefined: it does not answer or has none). */
  private async memoryRounds(p: Pair, hostVm: string): Promise<number | undefined> {
    const st = await this.clientOf(hostVm)
      .secVm(p.agentId)
      .catch(() => undefined);
    return st?.monitors.find((m) => m.monitor === "memory")?.rounds;
  }

  /**
   * Broken only after the old monitor has done one whole round that began after the new
   * one's baseline: an event between the old one's last look and that baseline (which then
   * holds it as already there) is seen by the old one. Counted on the old service's reported
   * round number r0, read after the baseline (or, before a pre-copy's destination resumes,
   * after the source stopped): round r0 + 2 starts at least a period after the report was
   * sent (a heartbeat at most ago, and the period is not shorter), so after the baseline was
   * seen; reported r0 + 3 means it is done. An old monitor that cannot read (its source is
   * gone) has nothing more to see; bounded by `end`.
   */
  private async overlap(p: Pair, hostVm: string, r0: number | undefined, end: number): Promise<boolean> {
    const c = this.clientOf(hostVm);
    let from = r0;
    while (Date.now() < end) {
      let st: Awaited<ReturnType<HostVmAgentClient["secVm"]>>;
      try {
        st = await c.secVm(p.agentId);
      } catch (e) {
        // Gone (its host VM released, removed): nothing more to see. Unanswered (a loaded
        // agent's slow reply): not a round, asked again.
        if (/404|no security VM/.test(String(e))) return true;
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      const m = st.monitors.find((x) => x.monitor === "memory");
      if (!m || m.state !== "running") return true;
      // Fewer rounds than at the start: its service died and was started again (its agent
      // alerted the loss): the view it had is gone, its new baseline reports nothing.
      if (from !== undefined && m.rounds < from) return true;
      // Not read at the start (unanswered then): read now, later is only stricter.
      from ??= m.rounds;
      if (m.rounds >= from + 3) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  }

  private async refresh(p: Pair): Promise<void> {
    if (!p.hostVm) return;
    const st = await this.clientOf(p.hostVm)
      .secVm(p.agentId)
      .catch(() => undefined);
    if (!st) return;
    p.state = st.state;
    p.rounds = st.monitors.find((m) => m.monitor === "memory")?.rounds ?? 0;
  }

  async drain(): Promise<{ secvm: string; alerts: Alert[] }[]> {
    const out = this.retired.splice(0);
    for (const p of this.pairs.values()) {
      if (!p.hostVm) continue;
      const gen = p.gen;
      const page = await this.clientOf(p.hostVm)
        .secVmAlerts(p.agentId, { after: p.cursor, limit: 1000 })
        .catch(() => undefined);
      // Switched meanwhile: the old monitor's last page went to `retired` from the old cursor.
      if (!page || page.alerts.length === 0 || gen !== p.gen) continue;
      p.cursor = page.next;
      out.push({ secvm: p.secvm, alerts: page.alerts.map(stripSeq) });
    }
    return out;
  }

  anchors(): MonitorAnchor[] {
    return [...this.pairs.values()].map((p) => ({
      secvm: p.secvm,
      target: p.target,
      hostVm: p.hostVm,
      state: p.state,
      rounds: p.rounds,
      ...(p.lastMove ? { lastMove: p.lastMove } : {}),
    }));
  }
}

type AgentAlert = AlertPageAnswer["alerts"][number];

/** An agent's alert in the one alert shape, bounded again (the agent's answer is only JSON). */
function stripSeq(a: AgentAlert): Alert {
  const evidence: Record<string, Evidence[string]> = {};
  for (const [k, v] of Object.entries(a.evidence))
    if (v === null || typeof v === "string" || typeof v === "boolean" || typeof v === "number")
      evidence[k] = v;
    else if (Array.isArray(v)) evidence[k] = v.map(String);
  return alert({
    time: a.time,
    target: a.target,
    monitor: a.monitor,
    channel: (CHANNELS as readonly string[]).includes(a.channel) ? (a.channel as Alert["channel"]) : "local",
    severity: a.severity,
    summary: a.summary,
    evidence,
  });
}
