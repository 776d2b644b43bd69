/**
 * The server agent's memory ledger (pure): which host VM's share of the server's memory
 * pool each guest's RAM counts against. An instant handover does not copy RAM, it moves
 * this entry from the source host VM to the destination; while pending, the guest counts on
 * both (the destination must have room before anything starts, the source keeps it until
 * the move is committed).
 *
 * Entries are made and undone by whoever moves guests (agents, the orchestrator); when one
 * of them dies half-way an entry can outlive what it stood for. reconcile() compares the
 * ledger with what the host-VM agents report and undoes what nothing stands behind any
 * more (see there).
 */
import type { HandoverView, HostVmLedgerView } from "./api-types.ts";

export class LedgerError extends Error {
  override name = "LedgerError";
  constructor(
    readonly code: "unknown_host_vm" | "capacity" | "duplicate" | "not_found" | "conflict",
    message: string,
  ) {
    super(message);
  }
}

interface Entry {
  memoryMiB: number;
  pending: boolean;
  /** When it was made (epoch ms): reconcile() leaves young entries alone. */
  since: number;
}

/** What a host-VM agent reports having, for reconcile(). */
export interface ObservedHostVm {
  /** Guests it runs (any state: booting, running, migrating, paused, failed). */
  guests: ReadonlySet<string>;
  /** Guests arriving by an incoming migration that can still run there (listening, armed, running). */
  incoming: ReadonlySet<string>;
}

export interface ReconcileAction {
  action: "released" | "committed" | "aborted";
  hostVm: string;
  guestId: string;
  handoverId: string | null;
  why: string;
}

export class MemoryLedger {
  private readonly hostVms = new Map<string, { memoryMiB: number; guests: Map<string, Entry> }>();
  private readonly handovers = new Map<string, HandoverView>();
  private seq = 0;

  constructor(hostVms: ReadonlyArray<{ name: string; memoryMiB: number }>) {
    for (const h of hostVms) this.hostVms.set(h.name, { memoryMiB: h.memoryMiB, guests: new Map() });
  }

  /** A host VM the underlying cloud moved onto this server. */
  attach(name: string, memoryMiB: number): void {
    if (this.hostVms.has(name))
      throw new LedgerError("duplicate", `host VM ${name} is on this server already`);
    this.hostVms.set(name, { memoryMiB, guests: new Map() });
  }

  /** A host VM that left this server: only an empty one (its guests' memory is in this pool). */
  detach(name: string): void {
    const h = this.hv(name);
    if (h.guests.size > 0)
      throw new LedgerError(
        "conflict",
        `host VM ${name} still holds ${h.guests.size} guest(s) in this server's pool: move them first`,
      );
    this.hostVms.delete(name);
  }

  private hv(name: string) {
    const h = this.hostVms.get(name);
    if (!h) throw new LedgerError("unknown_host_vm", `no host VM ${name} on this server`);
    return h;
  }

  used(hostVm: string): number {
    let sum = 0;
    for (const e of this.hv(hostVm).guests.values()) sum += e.memoryMiB;
    return sum;
  }

  /** Where a guest is (firmly) accounted, if anywhere. */
  whereIs(guestId: string): string | null {
    for (const [name, h] of this.hostVms) {
      const e = h.guests.get(guestId);
      if (e && !e.pending) return name;
    }
    return null;
  }

  reserve(hostVm: string, guestId: string, memoryMiB: number, pending = false, now = Date.now()): void {
    const h = this.hv(hostVm);
    if (h.guests.has(guestId)) {
      throw new LedgerError("duplicate", `guest ${guestId} is already accounted on host VM ${hostVm}`);
    }
    const free = h.memoryMiB - this.used(hostVm);
    if (memoryMiB > free) {
      throw new LedgerError(
        "capacity",
        `host VM ${hostVm} has ${free} MiB free of ${h.memoryMiB} MiB; guest ${guestId} needs ${memoryMiB} MiB`,
      );
    }
    h.guests.set(guestId, { memoryMiB, pending, since: now });
  }

  release(hostVm: string, guestId: string): boolean {
    return this.hv(hostVm).guests.delete(guestId);
  }

  beginHandover(guestId: string, fromHostVm: string, toHostVm: string, now: number): HandoverView {
    if (fromHostVm === toHostVm)
      throw new LedgerError("conflict", "source and destination host VM are the same");
    const src = this.hv(fromHostVm).guests.get(guestId);
    if (!src || src.pending) {
      throw new LedgerError("not_found", `guest ${guestId} is not accounted on host VM ${fromHostVm}`);
    }
    for (const h of this.handovers.values()) {
      if (h.guestId === guestId && h.state === "pending") {
        throw new LedgerError("conflict", `guest ${guestId} is already being handed over (${h.handoverId})`);
      }
    }
    this.reserve(toHostVm, guestId, src.memoryMiB, true, now);
    const view: HandoverView = {
      handoverId: `h-${(++this.seq).toString(36)}${now.toString(36)}`,
      guestId,
      fromHostVm,
      toHostVm,
      memoryMiB: src.memoryMiB,
      state: "pending",
      startedAt: now,
      endedAt: null,
    };
    this.handovers.set(view.handoverId, view);
    return view;
  }

  private pendingHandover(id: string): HandoverView {
    const h = this.handovers.get(id);
    if (!h) throw new LedgerError("not_found", `no handover ${id}`);
    if (h.state !== "pending") throw new LedgerError("conflict", `handover ${id} is already ${h.state}`);
    return h;
  }

  commitHandover(id: string, now: number): HandoverView {
    const h = this.pendingHandover(id);
    this.hv(h.fromHostVm).guests.delete(h.guestId);
    const dst = this.hv(h.toHostVm).guests.get(h.guestId);
    if (dst) dst.pending = false;
    h.state = "committed";
    h.endedAt = now;
    return h;
  }

  abortHandover(id: string, now: number): HandoverView {
    const h = this.pendingHandover(id);
    this.hv(h.toHostVm).guests.delete(h.guestId);
    h.state = "aborted";
    h.endedAt = now;
    return h;
  }

  /**
   * Undoes what nothing stands behind any more, judged from what the host-VM agents in
   * `observed` reported (host VMs whose agent did not answer are left alone), considering
   * only entries and handovers older than `before` (the observation started after them,
   * with a grace period for moves in flight):
   * - an entry of a guest that its host VM neither runs nor expects (no incoming that can
   *   still run) is released, e.g. the reservation of an incoming that expired after its
   *   orchestrator died, or the entry of a guest whose agent confirmed its departure itself;
   * - a pending handover is committed when only the destination has the guest, aborted
   *   when only the source has it and the destination expects nothing; otherwise (a move
   *   still being decided) it is left alone.
   */
  reconcile(observed: ReadonlyMap<string, ObservedHostVm>, before: number, now: number): ReconcileAction[] {
    const done: ReconcileAction[] = [];
    const has = (hostVm: string, guestId: string) => {
      const o = observed.get(hostVm);
      return o ? { guest: o.guests.has(guestId), incoming: o.incoming.has(guestId) } : null;
    };
    for (const h of [...this.handovers.values()]) {
      if (h.state !== "pending" || h.startedAt >= before) continue;
      const from = has(h.fromHostVm, h.guestId);
      const to = has(h.toHostVm, h.guestId);
      if (!from || !to) continue;
      if (to.guest && !from.guest) {
        this.commitHandover(h.handoverId, now);
        done.push({
          action: "committed",
          hostVm: h.toHostVm,
          guestId: h.guestId,
          handoverId: h.handoverId,
          why: `the guest runs on ${h.toHostVm} and is gone from ${h.fromHostVm}`,
        });
      } else if (from.guest && !to.guest && !to.incoming) {
        this.abortHandover(h.handoverId, now);
        done.push({
          action: "aborted",
          hostVm: h.toHostVm,
          guestId: h.guestId,
          handoverId: h.handoverId,
          why: `the guest stayed on ${h.fromHostVm} and ${h.toHostVm} expects it no more`,
        });
      }
    }
    const inHandover = new Set(
      [...this.handovers.values()].filter((h) => h.state === "pending").map((h) => h.guestId),
    );
    for (const [hostVm, hv] of this.hostVms) {
      const o = observed.get(hostVm);
      if (!o) continue;
      for (const [guestId, e] of [...hv.guests]) {
        if (e.since >= before || inHandover.has(guestId)) continue;
        if (o.guests.has(guestId) || o.incoming.has(guestId)) continue;
        hv.guests.delete(guestId);
        done.push({
          action: "released",
          hostVm,
          guestId,
          handoverId: null,
          why: `${hostVm} neither runs nor expects ${guestId}`,
        });
      }
    }
    return done;
  }

  handoverViews(limit = 50): HandoverView[] {
    return [...this.handovers.values()].slice(-limit);
  }

  view(urls: ReadonlyMap<string, { url: string; pid: number; alive: boolean }>): HostVmLedgerView[] {
    return [...this.hostVms].map(([name, h]) => {
      const guests = [...h.guests].map(([guestId, e]) => ({
        guestId,
        memoryMiB: e.memoryMiB,
        pending: e.pending,
      }));
      return {
        name,
        memoryMiB: h.memoryMiB,
        reservedMiB: guests.filter((g) => !g.pending).reduce((s, g) => s + g.memoryMiB, 0),
        pendingMiB: guests.filter((g) => g.pending).reduce((s, g) => s + g.memoryMiB, 0),
        guests,
        url: urls.get(name)?.url ?? null,
        pid: urls.get(name)?.pid ?? null,
        agentAlive: urls.get(name)?.alive ?? null,
      };
    });
  }
}
