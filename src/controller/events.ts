/**
 * What happens in the cloud, as a stream for the dashboard and CLI (server-sent events).
 * Each event names the tenant it concerns (if any) so a tenant's stream carries only theirs.
 *
 * Emitting never fails: a subscriber that throws is that subscriber's problem (it is
 * reported and dropped), so no request, audit or executor step can be failed by a listener.
 */

export interface CloudEvent {
  readonly seq: number;
  readonly at: number;
  readonly kind: string;
  readonly tenant: string | undefined;
  readonly data: Readonly<Record<string, unknown>>;
}

export type Listener = (e: CloudEvent) => void;

/** Where a reconnecting client's Last-Event-ID puts it relative to what is retained. */
export type Resume =
  /** Replay the retained events after its id. */
  | { readonly kind: "continue"; readonly events: readonly CloudEvent[] }
  /** Its id is older than the oldest retained event, or from another run of the controller
   * (newer than any emitted): events were missed, so it gets all retained ones and must
   * reload its state. */
  | { readonly kind: "gap"; readonly events: readonly CloudEvent[] };

export const RETAINED_EVENTS = 200;

export class EventBus {
  private readonly listeners = new Set<Listener>();
  private seq = 0;
  /** The most recent events, for clients that (re)connect. */
  private readonly recent: CloudEvent[] = [];

  /** @param onListenerError told about a listener that threw (it has been unsubscribed). */
  constructor(private readonly onListenerError: (err: unknown, e: CloudEvent) => void = () => {}) {}

  emit(
    kind: string,
    tenant: string | undefined,
    data: Record<string, unknown>,
    at = Date.now() / 1000,
  ): void {
    const e: CloudEvent = { seq: ++this.seq, at, kind, tenant, data };
    this.recent.push(e);
    if (this.recent.length > RETAINED_EVENTS) this.recent.shift();
    for (const l of [...this.listeners]) {
      try {
        l(e);
      } catch (err) {
        this.listeners.delete(l);
        try {
          this.onListenerError(err, e);
        } catch {
          // the reporter failing must not fail the emitter either
        }
      }
    }
  }

  subscribe(listener: Listener): () => void {
    // A function may subscribe twice; each subscription gets its own wrapper to remove.
    const own: Listener = (e) => listener(e);
    this.listeners.add(own);
    return () => {
      this.listeners.delete(own);
    };
  }

  get subscribers(): number {
    return this.listeners.size;
  }

  /** The sequence number of the last event emitted (0 before the first). */
  get lastSeq(): number {
    return this.seq;
  }

  since(seq: number): CloudEvent[] {
    return this.recent.filter((e) => e.seq > seq);
  }

  /** What a client that last saw `lastSeen` (undefined: a new client) should be sent first. */
  resume(lastSeen: number | undefined): Resume {
    if (lastSeen === undefined) return { kind: "continue", events: [...this.recent] };
    const oldest = this.recent.length > 0 ? this.recent[0].seq : this.seq + 1;
    if (lastSeen > this.seq || lastSeen < oldest - 1) return { kind: "gap", events: [...this.recent] };
    return { kind: "continue", events: this.since(lastSeen) };
  }
}
