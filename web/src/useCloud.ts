/**
 * The dashboard's live state: everything the API lists, refreshed on server-sent events
 * (throttled) and by polling as a fallback, plus a client-side series of /api/overview for
 * the charts.
 */
import { useCallback, useEffect, useRef, useState } from "react";
import { type Api, EVENT_KINDS, HttpError, IN_PLACE_KINDS } from "./api.ts";
import type {
  Automation,
  Guest,
  HistoryPoint,
  HostVm,
  Migration,
  Overview,
  PatchVmBody,
  Placement,
  Plan,
  Sample,
  Server,
  SettingsBody,
} from "./types.ts";

export type Connection = "connecting" | "live" | "polling";

export interface CloudState {
  readonly role: "admin" | "tenant" | undefined;
  readonly overview: Overview | undefined;
  /** When the overview arrived (wall ms), to run the provider's clock on between polls. */
  readonly overviewAt: number | undefined;
  readonly servers: readonly Server[];
  readonly hostVms: readonly HostVm[];
  /** Where host VMs are and how that is known (admins only). */
  readonly placement: Placement | undefined;
  readonly guests: readonly Guest[];
  readonly securityVms: readonly Guest[];
  readonly proposed: readonly Plan[];
  readonly recentPlans: readonly Plan[];
  readonly migrations: readonly Migration[];
  readonly automation: Automation | undefined;
  readonly samples: readonly Sample[];
  readonly connection: Connection;
  readonly updatedAt: number | undefined;
  readonly error: string | undefined;
}

const EMPTY: CloudState = {
  role: undefined,
  overview: undefined,
  overviewAt: undefined,
  servers: [],
  hostVms: [],
  placement: undefined,
  guests: [],
  securityVms: [],
  proposed: [],
  recentPlans: [],
  migrations: [],
  automation: undefined,
  samples: [],
  connection: "connecting",
  updatedAt: undefined,
  error: undefined,
};

const MAX_SAMPLES = 720;
const OVERVIEW_MS = 2000;
const POLL_LIVE_MS = 5000;
const POLL_FALLBACK_MS = 2000;
const EVENT_THROTTLE_MS = 600;

export interface CloudActions {
  refresh(): Promise<void>;
  approve(plan: number): Promise<void>;
  cancel(plan: number): Promise<void>;
  setAutomation(level: Automation): Promise<void>;
  setGuestAutomation(guest: string, level: Automation | null): Promise<void>;
  /** Renews a host VM's hypervisor layer under its guests (admin): a plan of one action. */
  rejuvenate(hostVm: string, mode: "in-place" | "evacuate"): Promise<void>;
  /** Hears every server-sent event (its kind and data) until the returned function is called. */
  subscribe(listener: StreamListener): () => void;
}

export type StreamListener = (kind: string, data: Readonly<Record<string, unknown>>) => void;

export function useCloud(api: Api, onUnauthorized: (message: string) => void): [CloudState, CloudActions] {
  const [state, setState] = useState<CloudState>(EMPTY);
  const role = useRef<"admin" | "tenant" | undefined>(undefined);
  const inFlight = useRef<Promise<void> | undefined>(undefined);
  const historyLoaded = useRef(false);
  const again = useRef(false);
  const listeners = useRef(new Set<StreamListener>());
  const unauthorized = useRef(onUnauthorized);
  unauthorized.current = onUnauthorized;

  const fail = useCallback((e: unknown) => {
    if (e instanceof HttpError && e.status === 401) {
      unauthorized.current(e.message);
      return;
    }
    if (e instanceof DOMException && e.name === "AbortError") return;
    setState((s) => ({ ...s, error: e instanceof Error ? e.message : String(e) }));
  }, []);

  const loadOnce = useCallback(async () => {
    if (role.current === undefined) {
      try {
        const settings = await api.get<{ automation: Automation }>("/api/settings");
        role.current = "admin";
        setState((s) => ({ ...s, role: "admin", automation: settings.automation }));
      } catch (e) {
        if (!(e instanceof HttpError && e.status === 403)) throw e;
        role.current = "tenant";
        setState((s) => ({ ...s, role: "tenant" }));
      }
    }
    const admin = role.current === "admin";
    const none = Promise.resolve([]);
    if (admin && !historyLoaded.current) {
      // The cloud's past, kept by the controller: the charts start with it, not a flat line.
      const { samples: past } = await api.get<{ samples: HistoryPoint[] }>(
        `/api/history?points=${MAX_SAMPLES}`,
      );
      historyLoaded.current = true;
      setState((s) => {
        const seeded = past.map((p) => ({ now: p.at, costPerHour: p.costPerHour, hostVms: p.hostVms }));
        const lastPast = seeded.at(-1)?.now ?? Number.NEGATIVE_INFINITY;
        return {
          ...s,
          samples: [...seeded, ...s.samples.filter((x) => x.now > lastPast)].slice(-MAX_SAMPLES),
        };
      });
    }
    const [servers, hostVms, guests, securityVms, proposed, recentPlans, migrations, settings, placement] =
      await Promise.all([
        admin ? api.get<Server[]>("/api/servers") : none,
        admin ? api.get<HostVm[]>("/api/hostvms") : none,
        api.getAll<Guest>("/api/vms"),
        api.get<Guest[]>("/api/security-vms"),
        admin ? api.get<Plan[]>("/api/plans?status=proposed") : none,
        admin ? api.get<Plan[]>("/api/plans?limit=12") : none,
        api.get<Migration[]>("/api/migrations?limit=60"),
        admin ? api.get<{ automation: Automation }>("/api/settings") : Promise.resolve(undefined),
        admin ? api.get<Placement>("/api/placement") : Promise.resolve(undefined),
      ]);
    setState((s) => ({
      ...s,
      servers: servers as Server[],
      hostVms: hostVms as HostVm[],
      placement,
      guests,
      securityVms,
      proposed: proposed as Plan[],
      recentPlans: (recentPlans as Plan[]).filter((p) => p.status !== "proposed"),
      migrations,
      automation: settings?.automation ?? s.automation,
      updatedAt: Date.now(),
      error: undefined,
    }));
  }, [api]);

  /** One refresh at a time; a request during one runs once more right after it. */
  const refresh = useCallback(async (): Promise<void> => {
    if (inFlight.current) {
      again.current = true;
      return inFlight.current;
    }
    const run = (async () => {
      do {
        again.current = false;
        try {
          await loadOnce();
        } catch (e) {
          fail(e);
        }
      } while (again.current);
    })();
    inFlight.current = run;
    try {
      await run;
    } finally {
      inFlight.current = undefined;
    }
  }, [loadOnce, fail]);

  const pollOverview = useCallback(async () => {
    try {
      const o = await api.get<Overview>("/api/overview");
      setState((s) => {
        let samples = s.samples;
        if (o.costPerHour !== undefined && o.hostVms !== undefined) {
          const sample = { now: o.now, costPerHour: o.costPerHour, hostVms: o.hostVms };
          const last = samples.at(-1);
          // Two polls between audits see the same provider time: the newer one wins.
          if (last && sample.now <= last.now)
            samples = [...samples.slice(0, -1), { ...sample, now: last.now }];
          else samples = [...samples, sample].slice(-MAX_SAMPLES);
        }
        return { ...s, overview: o, overviewAt: Date.now(), samples };
      });
    } catch (e) {
      fail(e);
    }
  }, [api, fail]);

  // Overview series, and the full state on a timer (faster while the event stream is down).
  const connection = state.connection;
  useEffect(() => {
    void pollOverview();
    const t = window.setInterval(() => void pollOverview(), OVERVIEW_MS);
    return () => window.clearInterval(t);
  }, [pollOverview]);
  useEffect(() => {
    void refresh();
    const t = window.setInterval(
      () => void refresh(),
      connection === "live" ? POLL_LIVE_MS : POLL_FALLBACK_MS,
    );
    return () => window.clearInterval(t);
  }, [refresh, connection]);

  // Server-sent events: progress updates in place; anything else refreshes (throttled).
  useEffect(() => {
    if (typeof EventSource === "undefined") {
      setState((s) => ({ ...s, connection: "polling" }));
      return;
    }
    const source = new EventSource(api.eventsUrl());
    let timer: number | undefined;
    const soon = () => {
      if (timer !== undefined) return;
      timer = window.setTimeout(() => {
        timer = undefined;
        void refresh();
        void pollOverview();
      }, EVENT_THROTTLE_MS);
    };
    const onEvent = (ev: MessageEvent<string>) => {
      if (listeners.current.size > 0) {
        try {
          const e = JSON.parse(ev.data) as { data?: Record<string, unknown> };
          for (const l of listeners.current) l(ev.type, e.data ?? {});
        } catch {
          // not JSON: nothing to tell the listeners
        }
      }
      if (ev.type === "migration.progress") {
        try {
          const e = JSON.parse(ev.data) as { data: { id: string; progress: number } };
          setState((s) => ({
            ...s,
            migrations: s.migrations.map((m) =>
              m.id === e.data.id && m.status === "running" ? { ...m, progress: e.data.progress } : m,
            ),
          }));
          return;
        } catch {
          // fall through to a refresh
        }
      }
      // An alert or a monitor's move changes no placement: its listeners have it.
      if (IN_PLACE_KINDS.has(ev.type)) return;
      soon();
    };
    source.onopen = () => setState((s) => ({ ...s, connection: "live" }));
    source.onerror = () => setState((s) => ({ ...s, connection: "polling" }));
    source.onmessage = onEvent;
    for (const kind of EVENT_KINDS) source.addEventListener(kind, onEvent);
    return () => {
      source.close();
      if (timer !== undefined) window.clearTimeout(timer);
    };
  }, [api, refresh, pollOverview]);

  const act = useCallback(
    async (fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (e) {
        fail(e);
        throw e;
      } finally {
        await refresh();
        void pollOverview();
      }
    },
    [fail, refresh, pollOverview],
  );

  // Stable, so that a subscriber's effect does not run again on every render.
  const subscribe = useCallback((listener: StreamListener) => {
    listeners.current.add(listener);
    return () => {
      listeners.current.delete(listener);
    };
  }, []);

  const actions: CloudActions = {
    refresh,
    subscribe,
    approve: (plan) => act(() => api.call("POST", `/api/plans/${plan}/approve`)),
    cancel: (plan) => act(() => api.call("POST", `/api/plans/${plan}/cancel`)),
    rejuvenate: (hostVm, mode) =>
      act(() => api.call("POST", `/api/hostvms/${encodeURIComponent(hostVm)}/rejuvenate`, { mode })),
    setAutomation: (automation) =>
      act(async () => {
        const body: SettingsBody = { automation };
        const r = await api.call<SettingsBody>("PUT", "/api/settings", body);
        setState((s) => ({ ...s, automation: r.automation }));
      }),
    setGuestAutomation: (guest, automation) => {
      const body: PatchVmBody = { automation };
      return act(() => api.call("PATCH", `/api/vms/${encodeURIComponent(guest)}`, body));
    },
  };
  return [state, actions];
}
