import { type PairView, pairKey } from "../monitoring.ts";
import type { Guest } from "../types.ts";
import { ShieldIcon } from "./CloudMap.tsx";

/** Security VM -> the guests it watches, and where each sits; hovering one lights them up on the map. */
export function SecurityLinks({
  securityVms,
  guests,
  onFocus,
  onSelect,
  pairs,
}: {
  pairs?: ReadonlyMap<string, PairView> | undefined;
  securityVms: readonly Guest[];
  guests: readonly Guest[];
  onFocus: (ids: readonly string[]) => void;
  onSelect: (guest: string) => void;
}) {
  const byId = new Map(guests.map((g) => [g.id, g]));
  if (securityVms.length === 0) return <p className="empty">No security VMs.</p>;
  return (
    <ul className="links" aria-label="Security VMs and their targets">
      {securityVms.map((s) => {
        const ids = [s.id, ...s.targets];
        return (
          <li
            key={s.id}
            className="link-row"
            data-testid="security-link"
            data-security-vm={s.id}
            data-targets={s.targets.join(" ")}
            onMouseEnter={() => onFocus(ids)}
            onMouseLeave={() => onFocus([])}
            onFocus={() => onFocus(ids)}
            onBlur={() => onFocus([])}
          >
            <button type="button" className="chip chip-security" onClick={() => onSelect(s.id)}>
              <ShieldIcon />
              {s.id}
            </button>
            <span className="muted small">
              {s.tenant} · {s.hostVm ?? "unplaced"}
            </span>
            <span className="arrow" aria-hidden="true">
              →
            </span>
            <span className="sr-only">watches</span>
            <ul className="targets">
              {s.targets.map((t) => {
                const g = byId.get(t);
                const remote = g && s.server && g.server && g.server !== s.server;
                const channel = pairs?.get(pairKey(s.id, t))?.channel;
                return (
                  <li key={t}>
                    <button type="button" className="target" onClick={() => onSelect(t)}>
                      {t}
                      <span className="muted small"> on {g?.hostVm ?? "?"}</span>
                      {remote && <span className="badge badge-remote">other server</span>}
                      {channel !== undefined && (
                        <span
                          className={`badge channel-badge channel-${channel ?? "none"}`}
                          data-testid="pair-channel"
                          data-channel={channel ?? "none"}
                          title="the monitoring channel placement gives this pair"
                        >
                          {channel ?? "unplaced"}
                        </span>
                      )}
                    </button>
                  </li>
                );
              })}
            </ul>
          </li>
        );
      })}
    </ul>
  );
}
