/**
 * report.html off the simulating thread. The report's ECharts code is 1.3 MB and runs cold
 * in a fresh process: loading and warming it up on a worker thread while the simulation runs
 * (a second core) takes it off a `nestcloud simulate` run's wall time. The built CLI (dist/)
 * has the worker as dist/sim/report-worker.js; from the TypeScript sources, or when the
 * worker cannot start or fails, the report renders on the calling thread. The HTML is the
 * same either way (renderReport; its bytes do not depend on the thread or on earlier charts).
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { SimulationResult } from "./results.ts";

export interface ReportRenderer {
  /** report.html of these results. */
  render(results: readonly SimulationResult[], title: string): Promise<string>;
  /** Stops the worker (if any); call when done or on failure. */
  close(): void;
  /** Where the last render() drew: on the worker thread, or on the calling thread. */
  readonly lastRenderedOn: "worker" | "caller" | undefined;
}

/** On the calling thread; loads ECharts on first use. */
export async function renderReport(results: readonly SimulationResult[], title: string): Promise<string> {
  return (await import("./report.ts")).renderReport(results, title);
}

/** The worker's file next to the built code, or undefined (TypeScript sources, not built). */
function workerFile(): URL | undefined {
  if (!import.meta.url.endsWith(".js")) return undefined;
  // Built: this code sits in dist/<dir>/ (two levels below the package root, as in src/).
  const url = new URL("../sim/report-worker.js", import.meta.url);
  return existsSync(fileURLToPath(url)) ? url : undefined;
}

/** Starts a renderer now (the worker loads while the caller goes on). */
export function startReportRenderer(): ReportRenderer {
  const file = workerFile();
  let worker: Worker | undefined;
  if (file) {
    try {
      // Its output is diagnostics only; it must not keep the process alive on its own.
      const w = new Worker(file);
      w.unref();
      // A failed worker is replaced by the calling thread (render() below).
      w.on("error", () => {});
      w.once("exit", () => {
        if (worker === w) worker = undefined;
      });
      worker = w;
    } catch {
      worker = undefined;
    }
  }
  const close = () => {
    void worker?.terminate();
    worker = undefined;
  };
  let renderedOn: ReportRenderer["lastRenderedOn"];
  return {
    close,
    get lastRenderedOn() {
      return renderedOn;
    },
    async render(results, title) {
      const w = worker;
      renderedOn = "caller";
      if (!w) return renderReport(results, title);
      const html = await new Promise<string | undefined>((resolve) => {
        const done = (v: string | undefined) => {
          w.off("message", onMessage).off("error", onFail).off("exit", onFail);
          resolve(v);
        };
        const onMessage = (m: { html?: string; error?: string }) => done(m.html);
        const onFail = () => done(undefined);
        w.on("message", onMessage).on("error", onFail).on("exit", onFail);
        w.ref();
        w.postMessage({ results, title });
      });
      close();
      if (html !== undefined) renderedOn = "worker";
      return html ?? renderReport(results, title);
    },
  };
}
