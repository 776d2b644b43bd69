/**
 * The frontier chart of one day: host-VM hours against SLATAH (log scale: the sweeps span
 * 0.01 % to tens of %), one line per policy family and variant through its parameter sweep,
 * the defaults drawn larger, the lower bound as a dotted line. SVG rendered on the server by
 * ECharts (as src/sim/report.ts does), legend inside the SVG so the file stands alone.
 */
import * as echarts from "echarts";

export interface ChartPoint {
  readonly slatah: number;
  readonly hostVmHours: number;
  readonly label: string;
  readonly isDefault: boolean;
}

export interface ChartSeries {
  readonly name: string;
  readonly color: string;
  /** Plain baselines dashed and hollow; the strong ones and nestcloud solid. */
  readonly dashed: boolean;
  readonly points: readonly ChartPoint[];
}

/** SLATAH below this (in %) is drawn at it: a log axis has no zero. */
export const SLATAH_FLOOR_PERCENT = 0.01;

export function frontierSvg(title: string, series: readonly ChartSeries[], lowerBound: number): string {
  const width = 1000;
  const height = 560;
  const xs = series.flatMap((s) => s.points.map((p) => p.slatah * 100));
  const maxX = 10 ** Math.ceil(Math.log10(Math.max(1, ...xs)));
  const x = (slatah: number) => Math.max(SLATAH_FLOOR_PERCENT, round(slatah * 100, 4));
  const c = echarts.init(null, null, { renderer: "svg", ssr: true, width, height });
  c.setOption({
    animation: false,
    backgroundColor: "#ffffff",
    title: {
      text: title,
      subtext:
        "large points: default parameters; dashed, hollow: the plain CloudSim policies; down and left is better",
      left: 12,
      top: 6,
      textStyle: { fontSize: 15 },
      subtextStyle: { fontSize: 11, color: "#555555" },
    },
    // Left-anchored at a fixed x: the server only estimates text widths, so a right-anchored
    // legend could run off the edge.
    legend: { orient: "vertical", left: width - 290, top: 84, itemWidth: 22, textStyle: { fontSize: 11 } },
    grid: { left: 72, right: 310, top: 96, bottom: 56 },
    xAxis: {
      type: "log",
      name: `SLATAH (%), log scale; below ${SLATAH_FLOOR_PERCENT} % drawn at ${SLATAH_FLOOR_PERCENT} %`,
      nameLocation: "middle",
      nameGap: 32,
      min: SLATAH_FLOOR_PERCENT,
      max: maxX,
    },
    yAxis: {
      type: "value",
      name: "host-VM hours",
      nameTextStyle: { align: "left" },
      min: (v: { min: number }) => Math.floor(Math.min(v.min, lowerBound) / 50) * 50,
    },
    series: [
      ...series.map((s) => ({
        name: s.name,
        type: "line",
        color: s.color,
        lineStyle: { type: s.dashed ? "dashed" : "solid", width: s.dashed ? 1.5 : 2.5 },
        symbol: s.dashed ? "emptyCircle" : "circle",
        data: s.points.map((p) => ({
          value: [x(p.slatah), round(p.hostVmHours, 1)],
          symbolSize: p.isDefault ? 13 : 6,
          name: p.label,
        })),
      })),
      {
        name: `lower bound (${lowerBound.toFixed(1)} h)`,
        type: "line",
        color: "#222222",
        symbol: "none",
        lineStyle: { type: "dotted", width: 2 },
        data: [
          [SLATAH_FLOOR_PERCENT, round(lowerBound, 1)],
          [maxX, round(lowerBound, 1)],
        ],
      },
    ],
  });
  const svg = c.renderToSVGString();
  c.dispose();
  return svg;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
