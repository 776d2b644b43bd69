/**
 * The report renderer's thread (see report-render.ts): loads ECharts and warms it up while
 * the simulation runs on the main thread, then renders each report it is sent.
 * Messages in: { results, title }; out: { html } or { error }.
 */
import { parentPort } from "node:worker_threads";
import { renderReport, warmUpReport } from "./report.ts";
import type { SimulationResult } from "./results.ts";

interface Job {
  results: SimulationResult[];
  title: string;
}

const port = parentPort;
if (!port) throw new Error("report-worker.ts runs as a worker thread only");
port.on("message", (job: Job) => {
  try {
    port.postMessage({ html: renderReport(job.results, job.title) });
  } catch (e) {
    port.postMessage({ error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }
});
warmUpReport();
