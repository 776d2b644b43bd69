import { useRef, useState } from "react";
import { mib, money, pct, tenantHues } from "../format.ts";
import type { PairView } from "../monitoring.ts";
import type { Guest, HostVm, Migration, Placement, PlacementEntry, Server } from "../types.ts";
import { Bar } from "./Bar.tsx";
import { ChannelLinks } from "./ChannelLinks.tsx";

interface Props {
  readonly servers: readonly Server[];
  readonly hostVms: readonly HostVm[];
  readonly placement?: Placement | undefined;
  readonly guests: readonly Guest[];
  readonly migrations: readonly Migration[];
  readonly highlight: ReadonlySet<string>;
  readonly selected: string | undefined;
  readonly onSelect: (guest: string) => void;
  /** Admins only: renew a host VM's hypervisor layer under its guests. */
  readonly onRejuvenate?: ((hostVm: string, mode: "in-place" | "evacuate") => Promise<void>) | undefined;
  /** Security VMs' pairs and their channels, drawn over the map. */
  readonly pairs?: ReadonlyMap<string, PairView> | undefined;
}

/** Guests drawn per host VM before a "+N more" (a big host VM would swamp the map). */
const CHIPS_SHOWN = 60;

interface Column {
  readonly server: Server | undefined;
  readonly id: string;
  readonly hosts: readonly HostVm[];
}

/**
 * Physical servers -> host VMs -> guests, with each host VM's CPU and memory. A tenant token
 * cannot list servers or host VMs, so the map is then drawn from its own guests' placement.
 */
export function CloudMap({
  servers,
  hostVms,
  placement,
  guests,
  migrations,
  highlight,
  selected,
  onSelect,
  onRejuvenate,
  pairs,
}: Props) {
  const wrap = useRef<HTMLDivElement>(null);
  // Shown only when the provider hides placement: then each server is a discovery's finding.
  const found =
    placement?.mode === "discovered" ? new Map(placement.hostVms.map((e) => [e.hostVm, e])) : undefined;
  const byId = new Map(guests.map((g) => [g.id, g]));
  const moving = new Map(migrations.filter((m) => m.status === "running").map((m) => [m.guest, m]));
  const columns = layout(servers, hostVms, guests);
  const hues = tenantHues(guests.map((g) => g.tenant));
  const tenants = [...new Set(guests.filter((g) => g.role === "tenant").map((g) => g.tenant))].sort();

  if (columns.length === 0) return <p className="empty">No servers or host VMs yet.</p>;
  return (
    <>
      <ul className="legend" aria-label="Tenants">
        {tenants.map((t) => (
          <li key={t}>
            <span className="swatch" style={{ ["--hue" as string]: hues.get(t) }} aria-hidden="true" />
            {t}
          </li>
        ))}
        <li>
          <span className="swatch swatch-security" aria-hidden="true" />
          security VM
        </li>
        <li>
          <span className="swatch swatch-moving" aria-hidden="true" />
          migrating
        </li>
        {pairs && pairs.size > 0 && (
          <li className="legend-channels" data-testid="channel-legend">
            monitoring: <span className="channel-key channel-local">local</span>
            <span className="channel-key channel-direct">direct</span>
            <span className="channel-key channel-remote">remote</span>
          </li>
        )}
        <li>
          <span className="swatch swatch-cpu" aria-hidden="true" />
          chip fill: guest CPU
        </li>
      </ul>
      <div className="map-wrap" ref={wrap}>
        <div className="map" data-testid="cloud-map">
          {columns.map((col) => (
            <article
              key={col.id}
              className="server"
              data-testid="server-card"
              data-server-id={col.id}
              aria-labelledby={`server-${col.id}`}
            >
              <header>
                <h3 id={`server-${col.id}`}>{col.server ? col.id : col.id === "" ? "Unplaced" : col.id}</h3>
                {col.server && (
                  <span className="muted">
                    {col.server.cores} cores · {mib(col.server.memoryMiB)} · {col.hosts.length}/
                    {col.server.hostVmSlots} host VMs
                  </span>
                )}
              </header>
              {col.hosts.length === 0 ? (
                <p className="empty small">no host VMs</p>
              ) : (
                <div className="hostvms">
                  {col.hosts.map((h) => (
                    <HostVmCard
                      key={h.id}
                      host={h}
                      placement={found?.get(h.id)}
                      guests={h.guests.map((id) => byId.get(id)).filter((g): g is Guest => g !== undefined)}
                      moving={moving}
                      hues={hues}
                      highlight={highlight}
                      selected={selected}
                      onSelect={onSelect}
                      onRejuvenate={onRejuvenate}
                    />
                  ))}
                </div>
              )}
            </article>
          ))}
        </div>
        {pairs && pairs.size > 0 && <ChannelLinks pairs={pairs} container={wrap} />}
      </div>
    </>
  );
}

/** How a host VM's server was found: source, confidence, age (e.g. "shared-memory 95 % · 4 s ago"). */
function PlacementBadge({ entry }: { entry: PlacementEntry }) {
  if (entry.server === null || entry.source === null)
    return (
      <span
        className="badge badge-placement-unknown"
        data-testid="placement-unknown"
        title="placement discovery has not placed it yet"
      >
        server unknown
      </span>
    );
  const age = entry.ageSeconds === null ? "" : ` · ${Math.round(entry.ageSeconds)} s ago`;
  return (
    <span
      className={`badge badge-placement${entry.conflict ? " badge-placement-conflict" : ""}`}
      data-testid="placement-badge"
      title={`server ${entry.server} discovered by ${entry.source} (confidence ${pct(entry.confidence)})${entry.conflict ? "; some evidence disagrees" : ""}`}
    >
      {entry.source} {pct(entry.confidence)}
      {age}
    </span>
  );
}

function HostVmCard({
  host,
  placement,
  guests,
  moving,
  hues,
  highlight,
  selected,
  onSelect,
  onRejuvenate,
}: {
  onRejuvenate?: ((hostVm: string, mode: "in-place" | "evacuate") => Promise<void>) | undefined;
  host: HostVm;
  placement: PlacementEntry | undefined;
  guests: readonly Guest[];
  moving: ReadonlyMap<string, Migration>;
  hues: ReadonlyMap<string, number>;
  highlight: ReadonlySet<string>;
  selected: string | undefined;
  onSelect: (guest: string) => void;
}) {
  const [all, setAll] = useState(false);
  const [busy, setBusy] = useState(false);
  const incoming = [...moving.values()].filter((m) => m.to === host.id).length;
  const shown = all ? guests : guests.slice(0, CHIPS_SHOWN);
  const memory = host.memoryMiB > 0 ? host.memoryUsedMiB / host.memoryMiB : null;
  // The CPU figure comes from the last audit, the guest list from the store: an emptied host
  // VM can show its old load for one audit.
  const cpu = host.guests.length === 0 ? 0 : host.cpu;
  return (
    <section
      className={`hostvm state-${host.state}`}
      data-testid="hostvm-card"
      data-hostvm-id={host.id}
      data-state={host.state}
      aria-labelledby={`hv-${host.id}`}
    >
      <header>
        <h4 id={`hv-${host.id}`}>{host.id}</h4>
        <span className="muted small">
          {host.type}
          {host.pricePerHour > 0 && ` · ${money(host.pricePerHour)}`}
        </span>
        {host.state !== "running" && <span className={`badge badge-${host.state}`}>{host.state}</span>}
        {placement && <PlacementBadge entry={placement} />}
        {onRejuvenate && host.state === "running" && (
          <button
            type="button"
            className="link small"
            data-testid="rejuvenate"
            title="renew this host VM's hypervisor (fresh QEMUs and agent) under its running guests"
            disabled={busy}
            onClick={() => {
              if (!window.confirm(`Rejuvenate ${host.id} in place? Each guest pauses briefly; none reboots.`))
                return;
              setBusy(true);
              void onRejuvenate(host.id, "in-place").finally(() => setBusy(false));
            }}
          >
            {busy ? "rejuvenating…" : "rejuvenate"}
          </button>
        )}
        {host.kept && (
          <span
            className="badge badge-kept"
            title="acquired by an operator: released only by the operator or an approved plan"
          >
            kept
          </span>
        )}
      </header>
      <Bar label={`CPU of ${host.id}`} value={cpu} text={`CPU ${pct(cpu)}`} />
      <Bar
        label={`Memory of ${host.id}`}
        value={memory}
        text={
          host.memoryMiB > 0 ? `${mib(host.memoryUsedMiB)} / ${mib(host.memoryMiB)}` : mib(host.memoryUsedMiB)
        }
      />
      {guests.length === 0 ? (
        <p className="empty small">empty{incoming > 0 ? ` · ${incoming} arriving` : ""}</p>
      ) : (
        <ul className="guests" aria-label={`Guests on ${host.id}`}>
          {shown.map((g) => (
            <li key={g.id}>
              <GuestChip
                guest={g}
                moving={moving.get(g.id)}
                hue={hues.get(g.tenant) ?? 210}
                highlighted={highlight.has(g.id)}
                selected={selected === g.id}
                onSelect={onSelect}
              />
            </li>
          ))}
          {guests.length > CHIPS_SHOWN && (
            <li>
              <button type="button" className="link small" onClick={() => setAll(!all)} aria-expanded={all}>
                {all ? "fewer" : `+${guests.length - CHIPS_SHOWN} more`}
              </button>
            </li>
          )}
        </ul>
      )}
    </section>
  );
}

function GuestChip({
  guest: g,
  moving,
  hue,
  highlighted,
  selected,
  onSelect,
}: {
  guest: Guest;
  moving: Migration | undefined;
  hue: number;
  highlighted: boolean;
  selected: boolean;
  onSelect: (guest: string) => void;
}) {
  const cls = [
    "chip",
    g.role === "security" ? "chip-security" : "",
    moving ? "chip-moving" : "",
    highlighted ? "chip-highlight" : "",
    selected ? "chip-selected" : "",
    g.powerState !== "running" ? "chip-stopped" : "",
  ]
    .filter(Boolean)
    .join(" ");
  const what = [
    g.id,
    g.role === "security" ? `security VM watching ${g.targets.join(", ")}` : `tenant ${g.tenant}`,
    `CPU ${pct(g.cpu)}`,
    mib(g.memoryMiB),
    g.powerState !== "running" ? g.powerState : "",
    moving ? `migrating to ${moving.to} (${moving.mechanism}, ${pct(moving.progress)})` : "",
  ]
    .filter(Boolean)
    .join(", ");
  return (
    <button
      type="button"
      className={cls}
      style={{
        ["--hue" as string]: hue,
        ["--cpu" as string]: `${Math.min(1, g.cpu ?? 0) * 100}%`,
      }}
      onClick={() => onSelect(g.id)}
      aria-label={what}
      aria-pressed={selected}
      title={what}
      data-testid="guest-chip"
      data-guest-id={g.id}
      data-role={g.role}
    >
      {g.role === "security" && <ShieldIcon />}
      {g.id}
      {moving && (
        <span className="chip-arrow" aria-hidden="true">
          →
        </span>
      )}
    </button>
  );
}

export function ShieldIcon() {
  return (
    <svg className="icon" viewBox="0 0 16 16" aria-hidden="true" focusable="false">
      <path d="M8 1.5 2.5 3.5v4c0 3.2 2.3 5.9 5.5 7 3.2-1.1 5.5-3.8 5.5-7v-4L8 1.5Z" fill="currentColor" />
    </svg>
  );
}

function layout(servers: readonly Server[], hostVms: readonly HostVm[], guests: readonly Guest[]): Column[] {
  if (servers.length > 0 || hostVms.length > 0) {
    const known = new Set(servers.map((s) => s.id));
    const cols: Column[] = servers.map((s) => ({
      server: s,
      id: s.id,
      hosts: hostVms.filter((h) => h.server === s.id),
    }));
    const stray = hostVms.filter((h) => !h.server || !known.has(h.server));
    if (stray.length > 0) cols.push({ server: undefined, id: "", hosts: stray });
    return cols;
  }
  // A tenant's view: servers and host VMs as far as its own guests tell.
  const groups = new Map<string, Map<string, Guest[]>>();
  for (const g of guests) {
    const s = g.server ?? "";
    const h = g.hostVm ?? "unplaced";
    if (!groups.has(s)) groups.set(s, new Map());
    const hosts = groups.get(s)!;
    if (!hosts.has(h)) hosts.set(h, []);
    hosts.get(h)!.push(g);
  }
  return [...groups]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([s, hosts]) => ({
      server: undefined,
      id: s,
      hosts: [...hosts].map(([id, gs]) => ({
        id,
        type: "",
        server: s || null,
        state: "running",
        acquiredAt: 0,
        kept: false,
        pricePerHour: 0,
        guests: gs.map((g) => g.id),
        memoryUsedMiB: gs.reduce((sum, g) => sum + g.memoryMiB, 0),
        memoryMiB: 0,
        cpu: null,
      })),
    }));
}
