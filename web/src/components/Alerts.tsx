import { useCallback, useEffect, useId, useRef, useState } from "react";
import type { Api } from "../api.ts";
import { type AlertFilter, alertOfEvent, alertsQuery, mergeAlerts } from "../monitoring.ts";
import {
  ALERT_SEVERITIES,
  type AlertPage,
  type ControllerAlert,
  MONITOR_KINDS,
  type MonitorKind,
  type Severity,
} from "../types.ts";
import type { StreamListener } from "../useCloud.ts";

const POLL_MS = 2000;

/**
 * The security VMs' alerts, newest first: loaded once per filter through GET /api/alerts (the
 * API scopes a tenant to its own), then live from the event stream (`alert` events, no
 * polling); paged forward by the cursor only while the stream is down, and once when it is
 * back.
 */
export function Alerts({
  api,
  subscribe,
  live,
  showTenant,
}: {
  api: Api;
  subscribe: (l: StreamListener) => () => void;
  live: boolean;
  showTenant: boolean;
}) {
  const [filter, setFilter] = useState<AlertFilter>({});
  const [alerts, setAlerts] = useState<ControllerAlert[]>([]);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<string | undefined>();
  // The cursor: the highest id read under this filter (from pages or events).
  const next = useRef(0);
  const filterRef = useRef(filter);
  filterRef.current = filter;
  const sevId = useId();
  const monId = useId();

  /** Pages after the cursor until the last one. */
  const catchUp = useCallback(async () => {
    const f = filterRef.current;
    try {
      for (;;) {
        const page = await api.get<AlertPage>(alertsQuery(f, next.current));
        if (filterRef.current !== f) return;
        next.current = Math.max(next.current, page.next);
        setAlerts((kept) => mergeAlerts(kept, page.alerts, f));
        if (!page.more) break;
      }
      setError(undefined);
      setLoaded(true);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  }, [api]);

  // A new filter: start afresh.
  // biome-ignore lint/correctness/useExhaustiveDependencies: the filter decides when to reload
  useEffect(() => {
    next.current = 0;
    setAlerts([]);
    setLoaded(false);
    void catchUp();
  }, [filter, catchUp]);

  useEffect(
    () =>
      subscribe((kind, data) => {
        if (kind === "reset") return void catchUp();
        if (kind !== "alert") return;
        const a = alertOfEvent(data);
        if (!a) return;
        next.current = Math.max(next.current, a.id);
        setAlerts((kept) => mergeAlerts(kept, [a], filterRef.current));
      }),
    [subscribe, catchUp],
  );

  // While the stream is down: the cursor polled. Back live: one catch-up for what was missed.
  useEffect(() => {
    if (live) {
      void catchUp();
      return;
    }
    const t = window.setInterval(() => void catchUp(), POLL_MS);
    return () => window.clearInterval(t);
  }, [live, catchUp]);

  return (
    <div className="alerts" data-testid="alerts-panel" data-loaded={loaded}>
      <div className="alert-filters">
        <div className="field inline">
          <label htmlFor={sevId}>Severity</label>
          <select
            id={sevId}
            value={filter.severity ?? ""}
            data-testid="alert-filter-severity"
            onChange={(e) =>
              setFilter((f) => ({ ...f, severity: (e.target.value || undefined) as Severity | undefined }))
            }
          >
            <option value="">all</option>
            {ALERT_SEVERITIES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <div className="field inline">
          <label htmlFor={monId}>Monitor</label>
          <select
            id={monId}
            value={filter.monitor ?? ""}
            data-testid="alert-filter-monitor"
            onChange={(e) =>
              setFilter((f) => ({ ...f, monitor: (e.target.value || undefined) as MonitorKind | undefined }))
            }
          >
            <option value="">all</option>
            {MONITOR_KINDS.map((m) => (
              <option key={m} value={m}>
                {m}
              </option>
            ))}
          </select>
        </div>
      </div>
      {error && (
        <p className="error small" role="alert">
          {error}
        </p>
      )}
      {alerts.length === 0 ? (
        <p className="empty">{loaded ? "No alerts." : "Loading alerts…"}</p>
      ) : (
        <ol className="alert-list" data-testid="alerts-list" aria-label="Alerts, newest first">
          {alerts.map((a) => (
            <AlertRow key={a.id} alert={a} showTenant={showTenant} />
          ))}
        </ol>
      )}
    </div>
  );
}

function AlertRow({ alert: a, showTenant }: { alert: ControllerAlert; showTenant: boolean }) {
  const when = new Date(a.time);
  const evidence = Object.keys(a.evidence).length > 0;
  return (
    <li
      className={`alert-row sev-${a.severity}`}
      data-testid="alert-row"
      data-alert-id={a.id}
      data-secvm={a.secvm}
      data-tenant={a.tenant}
      data-severity={a.severity}
      data-monitor={a.monitor}
      data-target={a.target}
      data-channel={a.channel}
      data-kind={typeof a.evidence.kind === "string" ? a.evidence.kind : ""}
    >
      <div className="alert-head">
        <span className={`badge badge-sev-${a.severity}`}>{a.severity}</span>
        <time dateTime={when.toISOString()} title={when.toISOString()} className="muted small">
          {when.toLocaleTimeString()}
        </time>
        <span className="small" data-testid="alert-target">
          {a.target}
        </span>
        <span className="muted small">
          {a.monitor} · {a.channel} · {a.secvm}
          {showTenant ? ` · ${a.tenant}` : ""}
        </span>
      </div>
      <p className="alert-summary" data-testid="alert-summary">
        {a.summary}
      </p>
      {evidence && (
        <details className="alert-evidence" data-testid="alert-evidence">
          <summary>evidence</summary>
          <pre>{JSON.stringify(a.evidence, null, 2)}</pre>
        </details>
      )}
    </li>
  );
}
