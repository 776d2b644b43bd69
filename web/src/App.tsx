import { useCallback, useEffect, useId, useMemo, useState } from "react";
import { Api, initialToken, saveToken, tokenFromHash } from "./api.ts";
import { Alerts } from "./components/Alerts.tsx";
import { CloudMap } from "./components/CloudMap.tsx";
import { GuestPanel } from "./components/GuestPanel.tsx";
import { LineChart } from "./components/LineChart.tsx";
import { Login, Logo } from "./components/Login.tsx";
import { Migrations } from "./components/Migrations.tsx";
import { Plans } from "./components/Plans.tsx";
import { SecurityLinks } from "./components/SecurityLinks.tsx";
import { clock, money } from "./format.ts";
import { AUTOMATION_LEVELS, type Automation } from "./types.ts";
import { type CloudActions, type CloudState, useCloud } from "./useCloud.ts";
import { usePairs } from "./usePairs.ts";

export function App() {
  const [token, setToken] = useState<string | null>(() => initialToken());
  const [notice, setNotice] = useState<string | undefined>();
  const signIn = useCallback((t: string) => {
    saveToken(t);
    setNotice(undefined);
    setToken(t);
  }, []);
  const signOut = useCallback((why?: string) => {
    saveToken(null);
    setNotice(why);
    setToken(null);
  }, []);
  // A #token= link opened in a tab that shows the dashboard already changes only the hash.
  useEffect(() => {
    const onHash = () => {
      const t = tokenFromHash();
      if (t) signIn(t);
    };
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, [signIn]);
  if (!token) return <Login onToken={signIn} notice={notice} />;
  return <Dashboard key={token} token={token} onSignOut={signOut} />;
}

function Dashboard({ token, onSignOut }: { token: string; onSignOut: (why?: string) => void }) {
  const api = useMemo(() => new Api(token), [token]);
  const onUnauthorized = useCallback(
    (msg: string) => onSignOut(`Signed out: the controller rejected the token (${msg}).`),
    [onSignOut],
  );
  const [cloud, actions] = useCloud(api, onUnauthorized);
  const [highlight, setHighlight] = useState<ReadonlySet<string>>(new Set());
  const [selected, setSelected] = useState<string | undefined>();
  const allGuests = useMemo(() => [...cloud.guests, ...cloud.securityVms], [cloud.guests, cloud.securityVms]);
  const selectedGuest = allGuests.find((g) => g.id === selected);
  const admin = cloud.role === "admin";
  const closePanel = useCallback(() => setSelected(undefined), []);
  const now = useProviderClock(cloud);
  const live = cloud.connection === "live";
  const securityVmIds = useMemo(() => cloud.securityVms.map((s) => s.id), [cloud.securityVms]);
  const pairs = usePairs(api, securityVmIds, actions.subscribe, live);

  return (
    <div className="app">
      <Header cloud={cloud} now={now} actions={actions} onSignOut={() => onSignOut()} />
      {cloud.error && (
        <p className="banner error" role="alert">
          {cloud.error}
        </p>
      )}
      <Stats cloud={cloud} />
      <main className="layout">
        <section className="card map-card" aria-labelledby="map-title">
          <h2 id="map-title">Servers, host VMs and guests</h2>
          <CloudMap
            servers={cloud.servers}
            hostVms={cloud.hostVms}
            placement={cloud.placement}
            guests={allGuests}
            migrations={cloud.migrations}
            highlight={highlight}
            selected={selected}
            onSelect={(id) => setSelected(id === selected ? undefined : id)}
            onRejuvenate={admin ? actions.rejuvenate : undefined}
            pairs={pairs}
          />
        </section>
        <div className="side">
          {admin && (
            <section className="card" aria-labelledby="plans-title" data-testid="plans-section">
              <h2 id="plans-title">
                Plans waiting for approval <span className="count">{cloud.proposed.length}</span>
              </h2>
              <Plans
                proposed={cloud.proposed}
                recent={cloud.recentPlans}
                onApprove={actions.approve}
                onCancel={actions.cancel}
              />
            </section>
          )}
          {admin && (
            <section className="card" aria-labelledby="trend-title">
              <h2 id="trend-title">Cost and host VMs over time</h2>
              <div className="charts">
                <LineChart
                  title="Cost rate"
                  points={cloud.samples.map((s) => ({ x: s.now, y: s.costPerHour }))}
                  format={(y) => `$${y.toFixed(2)}`}
                  color="var(--accent)"
                  testId="cost-chart"
                />
                <LineChart
                  title="Host VMs"
                  points={cloud.samples.map((s) => ({ x: s.now, y: s.hostVms }))}
                  format={(y) => (Number.isInteger(y) ? String(y) : y.toFixed(1))}
                  color="var(--violet)"
                  step
                  testId="hostvm-chart"
                />
              </div>
            </section>
          )}
          <section className="card" aria-labelledby="security-title" data-testid="security-section">
            <h2 id="security-title">Security VMs</h2>
            <SecurityLinks
              securityVms={cloud.securityVms}
              guests={allGuests}
              onFocus={(ids) => setHighlight(new Set(ids))}
              onSelect={setSelected}
              pairs={pairs}
            />
          </section>
          <section className="card" aria-labelledby="alerts-title" data-testid="alerts-section">
            <h2 id="alerts-title">Security alerts</h2>
            <Alerts api={api} subscribe={actions.subscribe} live={live} showTenant={admin} />
          </section>
        </div>
        <section className="card wide" aria-labelledby="migrations-title" data-testid="migrations-section">
          <h2 id="migrations-title">Migrations</h2>
          <Migrations migrations={cloud.migrations} now={now} />
        </section>
      </main>
      {selectedGuest && (
        <GuestPanel
          guest={selectedGuest}
          cloudAutomation={cloud.automation}
          migrations={cloud.migrations}
          onClose={closePanel}
          onAutomation={(level) => actions.setGuestAutomation(selectedGuest.id, level)}
          canEdit
          token={token}
          api={api}
          subscribe={actions.subscribe}
          live={live}
        />
      )}
    </div>
  );
}

/** The provider's clock, run on between overview polls at the provider's speed. */
function useProviderClock(cloud: CloudState): number | undefined {
  const [, setTick] = useState(0);
  useEffect(() => {
    const t = window.setInterval(() => setTick((n) => n + 1), 1000);
    return () => window.clearInterval(t);
  }, []);
  const o = cloud.overview;
  if (!o || cloud.overviewAt === undefined) return undefined;
  const ahead = Math.min(5, Math.max(0, (Date.now() - cloud.overviewAt) / 1000));
  return o.now + ahead * o.speed;
}

function Header({
  cloud,
  now,
  actions,
  onSignOut,
}: {
  cloud: CloudState;
  now: number | undefined;
  actions: CloudActions;
  onSignOut: () => void;
}) {
  const o = cloud.overview;
  const selectId = useId();
  const [busy, setBusy] = useState(false);
  const change = async (level: Automation) => {
    setBusy(true);
    try {
      await actions.setAutomation(level);
    } catch {
      // shown in the error banner
    } finally {
      setBusy(false);
    }
  };
  const connectionText =
    cloud.connection === "live" ? "live" : cloud.connection === "polling" ? "polling" : "connecting";
  return (
    <header className="top">
      <div className="brand">
        <Logo />
        <h1>nestcloud</h1>
      </div>
      <div className="meta" aria-live="off">
        {o && (
          <>
            <span title="Provider time">
              <span className="muted">time</span>{" "}
              <strong data-testid="sim-clock">{clock(now ?? o.now)}</strong>
            </span>
            <span>
              <span className="muted">provider</span> {o.provider}
              {o.speed !== 1 && <span className="muted"> ×{o.speed}</span>}
            </span>
            {!o.leader && <span className="badge badge-failed">follower</span>}
          </>
        )}
        <span
          className={`conn conn-${cloud.connection}`}
          data-testid="connection-status"
          data-connection={cloud.connection}
          title={
            cloud.connection === "live"
              ? "Receiving server-sent events"
              : "Event stream unavailable: refreshing by polling"
          }
        >
          <span className="dot" aria-hidden="true" />
          {connectionText}
        </span>
      </div>
      <div className="controls">
        {cloud.role === "admin" && (
          <div className="field inline">
            <label htmlFor={selectId}>Cloud automation</label>
            <select
              id={selectId}
              value={cloud.automation ?? ""}
              disabled={busy || !cloud.automation}
              onChange={(e) => change(e.target.value as Automation)}
              data-testid="automation-select"
            >
              {!cloud.automation && <option value="">…</option>}
              {AUTOMATION_LEVELS.map((l) => (
                <option key={l} value={l}>
                  {l}
                </option>
              ))}
            </select>
          </div>
        )}
        {cloud.role === "tenant" && <span className="badge">tenant view</span>}
        <button type="button" onClick={onSignOut} data-testid="sign-out">
          Sign out
        </button>
      </div>
    </header>
  );
}

function Stats({ cloud }: { cloud: CloudState }) {
  const o = cloud.overview;
  const items: Array<[string, string, string]> = [
    ["Guests", o ? `${o.runningGuests} / ${o.guests}` : "–", "stat-guests"],
  ];
  if (cloud.role !== "tenant") {
    items.push(
      ["Host VMs", o?.hostVms !== undefined ? String(o.hostVms) : "–", "stat-hostvms"],
      ["Cost rate", o?.costPerHour !== undefined ? money(o.costPerHour) : "–", "stat-cost"],
      [
        "Active migrations",
        o?.activeMigrations !== undefined ? String(o.activeMigrations) : "–",
        "stat-migrations",
      ],
      ["Plans to approve", o?.proposedPlans !== undefined ? String(o.proposedPlans) : "–", "stat-plans"],
    );
  }
  return (
    <section className="stats" aria-label="Overview">
      <dl>
        {items.map(([label, value, id]) => (
          <div key={id} className="stat" data-testid={id}>
            <dt>{label}</dt>
            <dd>{value}</dd>
          </div>
        ))}
      </dl>
    </section>
  );
}
