/**
 * What happens in the cloud, as a stream for the dashboard and CLI (server-sent events).
 * Each event names the tenant it concerns (if any) so a tenant's stream carries only theirs.
 */
import { EventEmitter } from "node:events";

export interface CloudEvent {
  readonly seq: number;
  readonly at: number;
  readonly kind: string;
  readonly tenant: string | undefined;
  readonly data: Readonly<Record<string, unknown>>;
}

export class EventBus {
  private readonly emitter = new EventEmitter();
  private seq = 0;
  /** The most recent events, for clients that (re)connect. */
  private readonly recent: CloudEvent[] = [];

  constructor() {
    this.emitter.setMaxListeners(1000);
  }

  emit(
    kind: string,
    tenant: string | undefined,
    data: Record<string, unknown>,
    at = Date.now() / 1000,
  ): void {
    const e: CloudEvent = { seq: ++this.seq, at, kind, tenant, data };
    this.recent.push(e);
    if (this.recent.length > 200) this.recent.shift();
    this.emitter.emit("event", e);
  }

  subscribe(listener: (e: CloudEvent) => void): () => void {
    this.emitter.on("event", listener);
    return () => this.emitter.off("event", listener);
  }

  since(seq: number): CloudEvent[] {
    return this.recent.filter((e) => e.seq > seq);
  }
}
