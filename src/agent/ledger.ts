/**
 * The server agent's memory ledger (pure): which host VM's share of the server's memory
 * pool each guest's RAM counts against. An instant handover does not copy RAM, it moves
 * this entry from the source host VM to the destination; while pending, the guest counts on
 * both (the destination must have room before anything starts, the source keeps it until
 * the move is committed).
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
}

export class MemoryLedger {
  private readonly hostVms = new Map<string, { memoryMiB: number; guests: Map<string, Entry> }>();
  private readonly handovers = new Map<string, HandoverView>();
  private seq = 0;

  constructor(hostVms: ReadonlyArray<{ name: string; memoryMiB: number }>) {
    for (const h of hostVms) this.hostVms.set(h.name, { memoryMiB: h.memoryMiB, guests: new Map() });
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

  reserve(hostVm: string, guestId: string, memoryMiB: number, pending = false): void {
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
    h.guests.set(guestId, { memoryMiB, pending });
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
    this.reserve(toHostVm, guestId, src.memoryMiB, true);
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

  handoverViews(limit = 50): HandoverView[] {
    return [...this.handovers.values()].slice(-limit);
  }

  view(urls: ReadonlyMap<string, { url: string; pid: number }>): HostVmLedgerView[] {
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
      };
    });
  }
}
