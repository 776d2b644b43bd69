/**
 * A self-contained HTML report of one or more runs, with charts rendered to SVG on the
 * server by ECharts (no browser, no script in the page).
 *
 * Layout: the page follows the window's width (charts two abreast on a wide screen, one on
 * a narrow one, scaled through their viewBox); wide tables scroll inside their own box, so
 * the page never does; numbers never wrap (nowrap, tabular figures). Chart titles and
 * legends are HTML above each chart, not SVG text: they wrap with the page and cannot be
 * drawn over each other or over the plot (the SVG's text widths are only estimated on the
 * server). Bare-metal scenarios rent nothing: no host-VM hours, cost or instant handovers.
 */
import { BarChart, LineChart } from "echarts/charts";
import { GridComponent } from "echarts/components";
import * as echarts from "echarts/core";
import { SVGRenderer } from "echarts/renderers";
import type { SimulationResult } from "./results.ts";

// Only what the charts use (the full "echarts" entry registers every chart and component:
// about twice the code to load for the same SVG, byte for byte). Titles and legends are HTML
// (see figure()), so neither the title nor the legend component is needed.
echarts.use([SVGRenderer, LineChart, BarChart, GridComponent]);

type Series = { name: string; color: string; data: [number, number][] };

/** ECharts' default palette, fixed here so the HTML legends match the charts. */
const PALETTE = [
  "#5470c6",
  "#91cc75",
  "#fac858",
  "#ee6666",
  "#73c0de",
  "#3ba272",
  "#fc8452",
  "#9a60b4",
  "#ea7ccc",
];
const MECHANISM_COLORS = { instant: "#3ba272", precopy: "#5470c6", postcopy: "#fc8452" } as const;
const MECHANISM_NAMES = { instant: "instant", precopy: "pre-copy", postcopy: "post-copy" } as const;

/** Rendered at a typical column width; the page scales the SVG (viewBox) to its column. */
const CHART_WIDTH = 680;
const CHART_HEIGHT = 280;

/** A chart of these series, laid out (ECharts' option, layout and scene) but not yet drawn. */
function chart(yName: string, series: Series[], hours: number, kind: "line" | "bar") {
  const c = echarts.init(null, null, {
    renderer: "svg",
    ssr: true,
    width: CHART_WIDTH,
    height: CHART_HEIGHT,
  });
  c.setOption({
    animation: false,
    // The y axis names its unit above its top end, left-aligned: clear of the tick labels.
    grid: { left: 64, right: 24, top: 36, bottom: 48 },
    xAxis: {
      type: "value",
      name: "hour",
      nameLocation: "middle",
      nameGap: 28,
      min: 0,
      max: Math.max(hours, 1 / 12),
    },
    yAxis: { type: "value", name: yName, nameTextStyle: { align: "left" } },
    series: series.map((s) => ({
      name: s.name,
      type: kind,
      data: s.data,
      color: s.color,
      showSymbol: false,
      stack: kind === "bar" ? "total" : undefined,
    })),
  });
  return c;
}

/** Numbering of the charts of one report (see chartSvg). */
interface ChartNumbering {
  /** The next chart's place in the report. */
  chart: number;
  /** The next CSS class number. */
  cssClass: number;
}

/**
 * One chart's SVG. zrender names a chart's ids after a process-wide counter of charts set up
 * ("zr7-c0") and its CSS classes after a process-wide counter of classes drawn ("zr7-cls-23"),
 * so both are renumbered from the report's start: a report's bytes do not depend on the
 * charts a process set up or drew before it (warmUpReport(), an earlier report), and are
 * those of a fresh process.
 */
function chartSvg(
  numbering: ChartNumbering,
  yName: string,
  series: Series[],
  hours: number,
  kind: "line" | "bar",
): string {
  const c = chart(yName, series, hours, kind);
  const svg = c.renderToSVGString();
  c.dispose();
  const zr = `zr${numbering.chart++}-`;
  // A chart's classes are one block of the counter: renumbered to follow the previous chart's.
  const classes = [...svg.matchAll(/\bzr\d+-cls-(\d+)\b/g)].map((m) => Number(m[1]));
  const first = classes.length > 0 ? Math.min(...classes) : 0;
  const base = numbering.cssClass;
  if (classes.length > 0) numbering.cssClass += Math.max(...classes) - first + 1;
  return svg
    .replace(/\bzr\d+-cls-(\d+)\b/g, (_, n: string) => `${zr}cls-${base + Number(n) - first}`)
    .replace(/\bzr\d+-/g, zr);
}

/**
 * Draws a line chart and a bar chart and throws them away: a process's first charts run
 * ECharts' code cold (several times slower); a renderer that can do this while the
 * simulation runs (report-worker.ts) then draws the report warm. The report's bytes stay
 * those of a fresh process (chartSvg renumbers zrender's ids).
 */
export function warmUpReport(): void {
  const data: [number, number][] = Array.from({ length: 288 }, (_, i) => [i / 12, i % 7]);
  const series = [
    { name: "a", color: PALETTE[0], data },
    { name: "b", color: PALETTE[1], data },
  ];
  const numbering: ChartNumbering = { chart: 0, cssClass: 0 };
  chartSvg(numbering, "x", series, 24, "line");
  chartSvg(numbering, "x", series, 24, "bar");
}

function figure(
  numbering: ChartNumbering,
  title: string,
  yName: string,
  series: Series[],
  hours: number,
  kind: "line" | "bar" = "line",
): string {
  const legend = series
    .map(
      (s) =>
        `<li><span class="swatch" style="background:${s.color}"></span><span class="name">${escapeHtml(s.name)}</span></li>`,
    )
    .join("");
  return `<figure><figcaption><div class="title">${escapeHtml(title)}</div><ul class="legend">${legend}</ul></figcaption>
${chartSvg(numbering, yName, series, hours, kind)}</figure>`;
}

const hour = (t: number) => Math.round((t / 3600) * 1000) / 1000;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
}

/** 1234.5 -> "1,234.5" (fixed decimals). */
const num = (x: number, digits = 0) =>
  x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const money = (x: number) => `$${num(x, 2)}`;
/** Prices keep their own precision: $0.834, not $0.83. */
const price = (x: number) =>
  `$${x.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 4 })}`;
/** Percent with two decimals; what would show as 0.00 says it is not zero. */
const pct = (x: number) => (x > 0 && x < 0.00005 ? "< 0.01 %" : `${num(x * 100, 2)} %`);
/** Tiny ratios (SLAV, ESV): three significant digits, e.g. "3.54e-8". */
const sci = (x: number) => (x === 0 ? "0" : x.toExponential(2).replace("e+", "e"));

/** 3600 -> "1 h", 900 -> "15 min", 45 -> "45 s". */
function duration(s: number): string {
  if (s >= 3600 && s % 3600 === 0) return `${s / 3600} h`;
  if (s >= 60 && s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}

/** How a host-VM type's rentals are rounded, e.g. "per started hour, at least 1 min". */
export function billingRule(incrementSeconds: number, minimumSeconds: number): string {
  const per =
    incrementSeconds <= 1
      ? "per second"
      : incrementSeconds === 3600
        ? "per started hour"
        : incrementSeconds === 60
          ? "per started minute"
          : `per started ${duration(incrementSeconds)}`;
  return minimumSeconds > incrementSeconds ? `${per}, at least ${duration(minimumSeconds)}` : per;
}

export function renderReport(results: readonly SimulationResult[], title: string): string {
  const numbering: ChartNumbering = { chart: 0, cssClass: 0 };
  const fig = (...args: Parameters<typeof figure> extends [ChartNumbering, ...infer R] ? R : never) =>
    figure(numbering, ...args);
  const first = results[0];
  const nested = results.some((r) => r.nesting === "nested");
  const hours = first.durationSeconds / 3600;
  const colorOf = (i: number) => PALETTE[i % PALETTE.length];
  const pick = (f: (p: SimulationResult["series"][number]) => number) =>
    results.map((r, i) => ({
      name: r.policy,
      color: colorOf(i),
      data: r.series.map((p) => [hour(p.t), f(p)] as [number, number]),
    }));

  const figures = [
    nested
      ? fig(
          "Rented host VMs",
          "host VMs",
          pick((p) => p.billedHostVms),
          hours,
        )
      : fig(
          "Physical servers carrying guests",
          "servers",
          pick((p) => p.billedHostVms),
          hours,
        ),
    ...(nested
      ? [
          fig(
            "Cost rate",
            "$ / hour",
            pick((p) => Math.round(p.costPerHour * 1000) / 1000),
            hours,
          ),
        ]
      : []),
    fig(
      "Power of physical servers",
      "W",
      pick((p) => Math.round(p.powerW)),
      hours,
    ),
    fig(
      `${nested ? "Host VMs" : "Servers"} over capacity at the round`,
      nested ? "host VMs" : "servers",
      pick((p) => p.violatingHostVms),
      hours,
    ),
  ];
  const mechanisms = nested
    ? (["instant", "precopy", "postcopy"] as const)
    : (["precopy", "postcopy"] as const);
  for (const r of results) {
    figures.push(
      fig(
        `Migrations per round by mechanism — ${r.policy}`,
        "migrations",
        mechanisms.map((m) => ({
          name: MECHANISM_NAMES[m],
          color: MECHANISM_COLORS[m],
          data: r.series.map((p) => [hour(p.t), p[m]] as [number, number]),
        })),
        hours,
        "bar",
      ),
    );
  }

  // Results: one column per policy (as `nestcloud compare` prints them).
  const metric = (name: string, f: (r: SimulationResult) => string) =>
    `<tr><th scope="row">${name}</th>${results.map((r) => `<td>${f(r)}</td>`).join("")}</tr>`;
  const resultRows = [
    ...(nested
      ? [
          metric("host-VM hours", (r) => num(r.hostVmHours, 1)),
          // The ratio and the bound in rows of their own: one number per cell.
          ...(results.every((r) => r.lowerBoundHostVmHours)
            ? [
                metric("&nbsp;&nbsp;× lower bound", (r) => num(r.hostVmHours / r.lowerBoundHostVmHours!, 2)),
                metric("&nbsp;&nbsp;lower bound", (r) => num(r.lowerBoundHostVmHours!, 1)),
              ]
            : []),
          metric("cost", (r) => money(r.cost)),
        ]
      : []),
    metric("energy (kWh)", (r) => num(r.energyKWh, 2)),
    metric("migrations", (r) => num(r.migrations.total)),
    ...(nested ? [metric("&nbsp;&nbsp;instant", (r) => num(r.migrations.instant))] : []),
    metric("&nbsp;&nbsp;pre-copy", (r) => num(r.migrations.precopy)),
    metric("&nbsp;&nbsp;post-copy", (r) => num(r.migrations.postcopy)),
    metric("network (GB)", (r) => num(r.networkBytes / 1e9, 2)),
    metric("SLATAH", (r) => pct(r.slatah)),
    metric("PDM", (r) => pct(r.pdm)),
    metric("SLAV", (r) => sci(r.slav)),
    metric("ESV", (r) => sci(r.esv)),
  ].join("\n");

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
:root{font-family:system-ui,sans-serif;line-height:1.4;color:#1d1d1f}
body{margin:0;padding:1.25rem clamp(0.75rem,3vw,2.5rem)}
main{max-width:1600px;margin:0 auto}
h1{font-size:1.5rem;margin:0 0 .5rem}
h2{font-size:1.15rem;margin:1.75rem 0 .5rem}
p{max-width:70rem}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}
thead th{background:#f4f4f4}
th[scope=row]{background:#fafafa;text-align:left;font-weight:500}
th.text{text-align:left}
td.text{text-align:left;white-space:normal}
.nw,td.nw{white-space:nowrap}
table.rentals thead th{white-space:normal;vertical-align:bottom}
ul.why{padding-left:1.2rem;max-width:70rem}
ul.why li{margin:.25rem 0}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,560px),1fr));gap:1.25rem 2rem}
figure{margin:0;min-width:0}
figcaption .title{font-weight:600}
ul.legend{display:flex;flex-wrap:wrap;gap:.15rem 1rem;list-style:none;margin:.2rem 0 0;padding:0;font-size:.875rem}
ul.legend li{display:flex;align-items:center;gap:.4rem;white-space:nowrap}
.swatch{display:inline-block;width:1.1em;height:.6em;border-radius:2px}
figure svg{display:block;width:100%;height:auto}
</style></head><body><main>
<h1>${escapeHtml(title)}</h1>
<p>Scenario <b>${escapeHtml(first.scenario)}</b>, trace <b>${escapeHtml(first.trace)}</b> (${num(first.guests)} guest VMs,
${num(first.physicalServers)} physical servers${nested ? ", guests nested in rented host VMs" : ", bare metal"}), seed ${first.seed},
${num(hours, hours % 1 === 0 ? 0 : 1)} h simulated.</p>
<h2>Results</h2>
<div class="scroll"><table class="results">
<thead><tr><th></th>${results.map((r) => `<th scope="col">${escapeHtml(r.policy)}</th>`).join("")}</tr></thead>
<tbody>
${resultRows}
</tbody></table></div>
${nested ? rentalsSection(results) : `<h2>What each policy rents</h2>\n<p>Nothing: on bare metal the guests run on the physical servers themselves, so there are no host-VM hours and no rental cost (the energy is what they cost).</p>`}
<h2>Over time</h2>
<div class="charts">
${figures.join("\n")}
</div>
</main></body></html>
`;
}

/** Per policy: the host-VM types it rented, how they are billed, and why it rents that way. */
function rentalsSection(results: readonly SimulationResult[]): string {
  const rows = results.flatMap((r) => {
    const peak = Math.max(0, ...r.series.map((p) => p.billedHostVms));
    return r.rentals.types.map(
      (
        t,
        i,
      ) => `<tr>${i === 0 ? `<td class="text nw" rowspan="${r.rentals.types.length}">${escapeHtml(r.policy)}</td>` : ""}
<td class="text"><span class="nw">${escapeHtml(t.type)}</span> <span class="nw">(${t.vcpus} vCPU, ${num(t.memoryMiB / 1024, t.memoryMiB % 1024 === 0 ? 0 : 1)} GiB)</span>
<span class="nw">at ${price(t.pricePerHour)} / h,</span> <span class="nw billing">billed ${billingRule(t.billingIncrementSeconds, t.minimumBillingSeconds)}</span></td>
<td>${num(t.hostVms)}</td>${i === 0 ? `<td rowspan="${r.rentals.types.length}">${num(peak)}</td>` : ""}
<td>${num(t.rentedHours, 1)}</td><td>${num(t.billedHours, 1)}</td><td>${money(t.cost)}</td></tr>`,
    );
  });
  const why = results
    .map((r) => {
      const rented = r.rentals.types.reduce((s, t) => s + t.rentedHours, 0);
      const billed = r.rentals.types.reduce((s, t) => s + t.billedHours, 0);
      const rounding =
        billed - rented > 0.05
          ? ` Rounding each rental up to its billing increment added ${num(billed - rented, 1)} h (${pct((billed - rented) / billed)} of the hours billed).`
          : "";
      const rule = r.rentals.rule ? ` ${escapeHtml(r.rentals.rule)}.` : "";
      return `<li><b>${escapeHtml(r.policy)}</b>${rule}${rounding}</li>`;
    })
    .join("\n");
  return `<h2>What each policy rents, and why</h2>
<div class="scroll"><table class="rentals">
<thead><tr><th class="text">policy</th><th class="text">host-VM type, price and billing</th>
<th>host VMs rented</th><th>peak at once</th><th>hours running</th><th>hours billed</th><th>cost</th></tr></thead>
<tbody>
${rows.join("\n")}
</tbody></table></div>
<ul class="why">
${why}
</ul>`;
}
