/**
 * A self-contained HTML report of one or more runs, with charts rendered to SVG on the
 * server by ECharts (no browser, no script in the page).
 */
import { BarChart, LineChart } from "echarts/charts";
import { GridComponent, LegendComponent, TitleComponent } from "echarts/components";
import * as echarts from "echarts/core";
import { SVGRenderer } from "echarts/renderers";
import type { SimulationResult } from "./results.ts";

// Only what the charts use (the full "echarts" entry registers every chart and component:
// about twice the code to load for the same SVG, byte for byte).
echarts.use([SVGRenderer, LineChart, BarChart, GridComponent, TitleComponent, LegendComponent]);

type Series = { name: string; data: [number, number][] };

function chart(title: string, yName: string, series: Series[], kind: "line" | "bar" = "line"): string {
  const c = echarts.init(null, null, { renderer: "svg", ssr: true, width: 880, height: 300 });
  c.setOption({
    animation: false,
    title: { text: title, left: "center", textStyle: { fontSize: 14 } },
    legend: { top: 24 },
    grid: { left: 60, right: 20, top: 60, bottom: 40 },
    xAxis: { type: "value", name: "hour", min: 0, max: 24 },
    yAxis: { type: "value", name: yName },
    series: series.map((s) => ({
      name: s.name,
      type: kind,
      data: s.data,
      showSymbol: false,
      stack: kind === "bar" ? "total" : undefined,
    })),
  });
  const svg = c.renderToSVGString();
  c.dispose();
  return svg;
}

const hour = (t: number) => Math.round((t / 3600) * 1000) / 1000;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
}

export function renderReport(results: readonly SimulationResult[], title: string): string {
  const pick = (f: (r: SimulationResult, p: SimulationResult["series"][number]) => number) =>
    results.map((r) => ({
      name: r.policy,
      data: r.series.map((p) => [hour(p.t), f(r, p)] as [number, number]),
    }));
  const charts = [
    chart(
      "Rented host VMs",
      "host VMs",
      pick((_, p) => p.billedHostVms),
    ),
    chart(
      "Cost rate",
      "$ / hour",
      pick((_, p) => Math.round(p.costPerHour * 1000) / 1000),
    ),
    chart(
      "Power of physical servers",
      "W",
      pick((_, p) => Math.round(p.powerW)),
    ),
    chart(
      "Host VMs over capacity at the round",
      "host VMs",
      pick((_, p) => p.violatingHostVms),
    ),
  ];
  for (const r of results) {
    charts.push(
      chart(
        `Migrations per round by mechanism — ${r.policy}`,
        "migrations",
        (["instant", "precopy", "postcopy"] as const).map((m) => ({
          name: m,
          data: r.series.map((p) => [hour(p.t), p[m]] as [number, number]),
        })),
        "bar",
      ),
    );
  }
  const pct = (x: number) => `${(x * 100).toFixed(2)} %`;
  const rows = results
    .map(
      (
        r,
      ) => `<tr><td>${escapeHtml(r.policy)}</td><td>${r.hostVmHours.toFixed(1)}</td><td>${r.cost.toFixed(2)}</td><td>${r.energyKWh.toFixed(2)}</td>
<td>${r.migrations.total}</td><td>${r.migrations.instant}</td><td>${r.migrations.precopy}</td><td>${r.migrations.postcopy}</td>
<td>${pct(r.slatah)}</td><td>${pct(r.pdm)}</td><td>${r.slav.toExponential(3)}</td><td>${r.esv.toExponential(3)}</td></tr>`,
    )
    .join("\n");
  const first = results[0];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:960px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}
figure{margin:1.5em 0}</style></head><body>
<h1>${escapeHtml(title)}</h1>
<p>Scenario <b>${escapeHtml(first.scenario)}</b>, trace <b>${escapeHtml(first.trace)}</b> (${first.guests} guest VMs,
${first.physicalServers} physical servers), seed ${first.seed}, ${(first.durationSeconds / 3600).toFixed(0)} h simulated.</p>
<table><tr><th>policy</th><th>host-VM hours</th><th>cost $</th><th>energy kWh</th><th>migrations</th><th>instant</th>
<th>pre-copy</th><th>post-copy</th><th>SLATAH</th><th>PDM</th><th>SLAV</th><th>ESV</th></tr>
${rows}</table>
${charts.map((c) => `<figure>${c}</figure>`).join("\n")}
</body></html>
`;
}
