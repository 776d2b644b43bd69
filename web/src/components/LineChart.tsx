import { clock } from "../format.ts";

export interface Point {
  readonly x: number;
  readonly y: number;
}

const W = 360;
const H = 140;
const PAD = { left: 46, right: 10, top: 12, bottom: 24 };

/**
 * A small SVG line chart (no chart library): x is provider time, y runs from zero to a round
 * number. `step` draws a staircase with whole-number ticks, for counts.
 */
export function LineChart({
  title,
  points,
  format,
  color,
  step = false,
  testId,
}: {
  title: string;
  points: readonly Point[];
  format: (y: number) => string;
  color: string;
  step?: boolean;
  testId?: string;
}) {
  const last = points.at(-1);
  const first = points[0];
  const summary = last
    ? `${title}: now ${format(last.y)}${first && first !== last ? `, ${format(first.y)} at ${clock(first.x)}` : ""}`
    : `${title}: no data yet`;
  return (
    <figure
      className="chart"
      data-testid={testId}
      data-points={points.length}
      data-first={first?.y}
      data-last={last?.y}
    >
      <figcaption>
        <span>{title}</span>
        <strong>{last ? format(last.y) : "–"}</strong>
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary}>
        <title>{summary}</title>
        {points.length > 0 ? (
          <Plot points={points} format={format} color={color} step={step} integer={step} />
        ) : (
          <Empty />
        )}
      </svg>
    </figure>
  );
}

function Empty() {
  return (
    <text x={W / 2} y={H / 2} textAnchor="middle" className="chart-empty">
      collecting samples…
    </text>
  );
}

/** The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten that is >= x. */
function niceCeil(x: number): number {
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

function Plot({
  points,
  format,
  color,
  step,
  integer,
}: {
  points: readonly Point[];
  format: (y: number) => string;
  color: string;
  step: boolean;
  integer: boolean;
}) {
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  if (x1 - x0 < 1) {
    x0 -= 30;
    x1 += 30;
  }
  const yMax = Math.max(...ys);
  const lo = 0;
  // Ticks at 0, half and the top: for counts the half is a whole number too.
  const hi = integer ? Math.max(2, 2 * Math.ceil((yMax * 1.05) / 2)) : niceCeil(yMax * 1.05 || 1);
  const sx = (x: number) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const sy = (y: number) => H - PAD.bottom - ((y - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);

  let d = "";
  points.forEach((p, i) => {
    if (i === 0) d += `M${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`;
    else if (step) d += `H${sx(p.x).toFixed(1)}V${sy(p.y).toFixed(1)}`;
    else d += `L${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`;
  });
  const base = sy(lo).toFixed(1);
  const area = `${d}V${base}H${sx(points[0].x).toFixed(1)}Z`;
  const ticks = [lo, (lo + hi) / 2, hi];
  const end = points[points.length - 1];

  return (
    <g>
      {ticks.map((t) => (
        <g key={t}>
          <line x1={PAD.left} x2={W - PAD.right} y1={sy(t)} y2={sy(t)} className="chart-grid" />
          <text x={PAD.left - 6} y={sy(t) + 4} textAnchor="end" className="chart-tick">
            {format(t)}
          </text>
        </g>
      ))}
      <text x={PAD.left} y={H - 6} className="chart-tick">
        {clock(x0)}
      </text>
      <text x={W - PAD.right} y={H - 6} textAnchor="end" className="chart-tick">
        {clock(x1)}
      </text>
      <path d={area} fill={color} opacity={0.12} />
      <path d={d} fill="none" stroke={color} strokeWidth={2} strokeLinejoin="round" />
      <circle cx={sx(end.x)} cy={sy(end.y)} r={3.5} fill={color} />
    </g>
  );
}
