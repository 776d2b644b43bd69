/**
 * The virtual AMT at the controller: power and boot actions on a guest (through its data
 * plane, which reaches the guest's QEMU whatever the guest's OS does), its inventory, and the
 * guest's event log, persisted in the store: actions with who asked (the token's principal),
 * what the guest did (powered off, reset, panicked, booted: drained from the plane), its
 * migrations and console attachments (from the event bus).
 */
import type { Logger } from "pino";
import type { GuestInventory, PowerAnswer, PowerRequest, Provider } from "../providers/index.ts";
import { ApiError } from "./errors.ts";
import type { CloudEvent, EventBus } from "./events.ts";
import type { Leadership } from "./leader.ts";
import type { Store } from "./store/connect.ts";

/** Who did something to a guest, as the event log says it. */
export type Actor = string | null;

/** Event-bus kinds that belong in a guest's log, and the log's kind for each. */
const BUS_KINDS: Readonly<Record<string, string>> = {
  "migration.started": "migration.started",
  "migration.completed": "migration.completed",
  "migration.failed": "migration.failed",
  "migration.cancelled": "migration.cancelled",
};

/** The detail line of a migration event (pure). */
export function migrationDetail(d: Readonly<Record<string, unknown>>): string {
  const parts = [`${String(d.from ?? "?")} -> ${String(d.to ?? "?")}`, String(d.mechanism ?? "")];
  if (d.plan !== undefined) parts.push(`plan ${String(d.plan)}`);
  if (d.error) parts.push(`error: ${String(d.error)}`);
  return parts.filter((p) => p !== "").join(", ");
}

export class VirtualAmt {
  private unsubscribe: (() => void) | undefined;
  /** Where each logged event is announced (vm.event, to the guest's tenant): the dashboard's live list. */
  private bus: EventBus | undefined;

  constructor(
    private readonly store: Store,
    private readonly provider: Provider,
    private readonly leader: Leadership,
    private readonly log: Logger,
  ) {}

  /** Records bus events of guests (migrations) in their logs; the leader writes them. */
  follow(bus: EventBus): void {
    this.unsubscribe?.();
    this.bus = bus;
    this.unsubscribe = bus.subscribe((e) => void this.fromBus(e));
  }

  close(): void {
    this.unsubscribe?.();
  }

  private async fromBus(e: CloudEvent): Promise<void> {
    const kind = BUS_KINDS[e.kind];
    const guest = e.data.guest;
    if (!kind || typeof guest !== "string" || !this.leader.isLeader) return;
    await this.recordFor(guest, kind, null, migrationDetail(e.data));
  }

  /** Appends to a guest's log (its tenant from the store); a failure is logged, never thrown. */
  async recordFor(
    guest: string,
    kind: string,
    actor: Actor,
    detail: string,
    at = Date.now() / 1000,
  ): Promise<void> {
    try {
      const tenant = await this.store.repos.guests.tenantOf(guest);
      if (tenant === undefined) return;
      await this.append(guest, tenant, kind, actor, detail, at);
    } catch (err) {
      this.log.warn({ err, guest, kind }, "could not record a guest event");
    }
  }

  /** A power or boot action, recorded with who asked and what came of it (refusals too). */
  async act(guest: string, tenant: string, req: PowerRequest, actor: string): Promise<PowerAnswer> {
    const power = this.plane();
    if (!this.leader.isLeader)
      throw new ApiError(503, "this controller is a follower; send power actions to the leader");
    const kind = `power.${req.action}`;
    const asked = [req.force ? "force" : "", req.append ? `append ${req.append}` : ""].filter(
      (s) => s !== "",
    );
    try {
      const a = await power.act(guest, req);
      await this.append(
        guest,
        tenant,
        kind,
        actor,
        `${a.outcome}: ${a.detail}${asked.length ? ` (${asked.join(", ")})` : ""}`,
      );
      return a;
    } catch (e) {
      await this.append(guest, tenant, kind, actor, `refused: ${(e as Error).message}`);
      throw e;
    }
  }

  async inventory(guest: string): Promise<GuestInventory> {
    return this.plane().inventory(guest);
  }

  /** What guests did since the last pass, into their logs (leader only). */
  async drainOnce(): Promise<number> {
    const power = this.provider.plane.power;
    if (!power) return 0;
    const events = await power.drainEvents();
    for (const e of events)
      await this.recordFor(e.guest, `guest.${e.kind.replace(/^guest-/, "")}`, null, e.detail, e.at);
    return events.length;
  }

  private async append(
    guest: string,
    tenant: string,
    kind: string,
    actor: Actor,
    detail: string,
    at = Date.now() / 1000,
  ): Promise<void> {
    const id = await this.leader.fenced((tx) =>
      tx.guestEvents.append({ guest, tenant, at, kind, actor, detail }),
    );
    this.bus?.emit("vm.event", tenant, { id: guest, event: id, kind, actor });
  }

  private plane() {
    const power = this.provider.plane.power;
    if (!power) throw new ApiError(409, `guests of provider ${this.provider.name} have no power control`);
    return power;
  }
}
