import { type RefObject, useEffect, useLayoutEffect, useState } from "react";
import { type PairView, recentSwitch, SWITCH_SHOWN_MS } from "../monitoring.ts";

interface Geometry {
  readonly key: string;
  readonly x1: number;
  readonly y1: number;
  readonly x2: number;
  readonly y2: number;
  /** The curve's control point: above both chips, so that it arcs over the guests between. */
  readonly cx: number;
  readonly cy: number;
}

/**
 * Each (security VM, target) pair drawn over the map as a curve between the two guests' chips, arcing over the row:
 * local solid, direct dashed, remote dotted (and coloured apart), its channel's name at the
 * middle; a switch seen on the stream shows "from → to" for a while.
 */
export function ChannelLinks({
  pairs,
  container,
}: {
  pairs: ReadonlyMap<string, PairView>;
  container: RefObject<HTMLDivElement | null>;
}) {
  const [geometry, setGeometry] = useState<{ w: number; h: number; lines: Geometry[] }>({
    w: 0,
    h: 0,
    lines: [],
  });
  const [, setTick] = useState(0);
  const [layoutTick, setLayoutTick] = useState(0);

  // Positions read from the chips after every render of the map (placement may have changed).
  useLayoutEffect(() => {
    const root = container.current;
    if (!root) return;
    const box = root.getBoundingClientRect();
    const chipBox = (id: string) => {
      const el = root.querySelector<HTMLElement>(
        `[data-testid="guest-chip"][data-guest-id="${CSS.escape(id)}"]`,
      );
      if (!el) return undefined;
      const r = el.getBoundingClientRect();
      // The chip's top centre: the curve leaves upwards, over the row, not through its names.
      return { x: r.left - box.left + r.width / 2, y: r.top - box.top };
    };
    const lines: Geometry[] = [];
    for (const [key, p] of pairs) {
      const a = chipBox(p.secvm);
      const b = chipBox(p.target);
      if (!a || !b) continue;
      const cx = (a.x + b.x) / 2;
      const cy = Math.min(a.y, b.y) - 16 - 0.12 * Math.abs(b.x - a.x);
      lines.push({ key, x1: a.x, y1: a.y, x2: b.x, y2: b.y, cx, cy });
    }
    const next = { w: root.scrollWidth, h: root.scrollHeight, lines };
    setGeometry((g) => (JSON.stringify(g) === JSON.stringify(next) ? g : next));
  });

  // The map's size changes without a render of ours (window, fonts): measured again.
  useEffect(() => {
    const root = container.current;
    if (!root || typeof ResizeObserver === "undefined") return;
    const ro = new ResizeObserver(() => setLayoutTick((n) => n + 1));
    ro.observe(root);
    return () => ro.disconnect();
  }, [container]);

  // A switch shown only for a while: one re-render when the newest one expires.
  const now = Date.now();
  const newest = Math.max(0, ...[...pairs.values()].map((p) => p.switched?.at ?? 0));
  useEffect(() => {
    const left = newest + SWITCH_SHOWN_MS - Date.now();
    if (newest === 0 || left <= 0) return;
    const t = window.setTimeout(() => setTick((n) => n + 1), left + 50);
    return () => window.clearTimeout(t);
  }, [newest]);

  const at = new Map(geometry.lines.map((l) => [l.key, l]));
  return (
    <svg
      className="channel-links"
      width={geometry.w}
      height={geometry.h}
      data-layout={layoutTick}
      role="img"
      aria-label="Security VMs' channels to their targets"
    >
      {[...pairs].map(([key, p]) => {
        const l = at.get(key);
        const sw = recentSwitch(p, now);
        const channel = p.channel ?? "none";
        const label = sw ? `${sw.from ?? "none"} → ${channel}` : channel;
        return (
          <g
            key={key}
            className={`channel-link channel-${channel}${sw ? " channel-switched" : ""}`}
            data-testid="channel-link"
            data-secvm={p.secvm}
            data-target={p.target}
            data-channel={channel}
            data-drawn={l ? "yes" : "no"}
            data-switched-from={sw ? (sw.from ?? "none") : undefined}
          >
            <title>{`${p.secvm} watches ${p.target} over the ${channel} channel${sw ? ` (was ${sw.from ?? "none"})` : ""}`}</title>
            {l && (
              <>
                <path d={`M ${l.x1} ${l.y1} Q ${l.cx} ${l.cy} ${l.x2} ${l.y2}`} />
                <text
                  x={(l.x1 + 2 * l.cx + l.x2) / 4}
                  y={(l.y1 + 2 * l.cy + l.y2) / 4 - 4}
                  textAnchor="middle"
                  data-testid="channel-label"
                >
                  {label}
                </text>
              </>
            )}
          </g>
        );
      })}
    </svg>
  );
}
