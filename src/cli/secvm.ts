/**
 * `nestcloud secvm alerts|list`: a testbed's security VMs and their alerts, read from the
 * host-VM agents that run them (registered in secvm-commands.ts, loaded when one runs).
 * `alerts --follow` keeps asking each agent for what came after the last alert it printed
 * (long polls), until interrupted.
 */
import Table from "cli-table3";
import {
  type AlertPageAnswer,
  type HostVmAgentClient,
  hostVmClient,
  type SecVmStatus,
} from "../agent/index.ts";
import {
  defaultTestbedRoot,
  listTestbeds,
  readTestbedState,
  stateDirOf,
  type TestbedState,
} from "../testbed/index.ts";
import { UsageError } from "./usage.ts";

export interface SecVmCliOptions {
  testbed?: string;
  root?: string;
  output?: string;
  secvm?: string;
  follow?: boolean;
  /** Stop following after this many ms (tests); default: until interrupted. */
  followMs?: string;
}

/** Where output goes (tests redirect it). */
export const secvmOutput = { write: (s: string): void => void process.stdout.write(s) };

function stateOf(o: SecVmCliOptions): TestbedState {
  const root = o.root ?? defaultTestbedRoot();
  const ids = o.testbed ? [o.testbed] : listTestbeds(root);
  if (ids.length !== 1)
    throw new UsageError(
      ids.length === 0 ? `no testbed under ${root}` : `${ids.length} testbeds: name one with --testbed`,
    );
  const state = readTestbedState(stateDirOf(ids[0], root));
  if (!state) throw new UsageError(`no testbed ${ids[0]} under ${root}`);
  return state;
}

function outputOf(o: SecVmCliOptions): "table" | "json" {
  const v = o.output ?? "table";
  if (v !== "table" && v !== "json") throw new UsageError(`--output ${v}: expected table or json`);
  return v;
}

interface Where {
  hostVm: string;
  client: HostVmAgentClient;
  vm: SecVmStatus;
}

async function secvms(state: TestbedState, only?: string): Promise<Where[]> {
  const out: Where[] = [];
  for (const h of state.hostVms) {
    const client = hostVmClient(state, h.server, h.name);
    for (const vm of await client.secVms())
      if (!only || vm.secvmId === only) out.push({ hostVm: `${h.server}/${h.name}`, client, vm });
  }
  if (only && out.length === 0) throw new UsageError(`no security VM ${only} in testbed ${state.id}`);
  return out;
}

const time = (ms: number) => new Date(ms).toISOString().replace("T", " ").slice(0, 23);

function alertRows(w: Where, page: AlertPageAnswer): string[][] {
  return page.alerts.map((a) => [
    String(a.seq),
    time(a.time),
    w.vm.secvmId,
    a.target,
    a.monitor,
    a.severity,
    a.summary.length > 100 ? `${a.summary.slice(0, 99)}…` : a.summary,
  ]);
}

function table(head: string[], rows: string[][]): string {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r);
  return t.toString();
}

export async function secvmList(o: SecVmCliOptions): Promise<void> {
  const out = outputOf(o);
  const list = await secvms(stateOf(o), o.secvm);
  if (out === "json")
    secvmOutput.write(
      `${JSON.stringify(
        list.map((w) => ({ hostVm: w.hostVm, ...w.vm })),
        null,
        2,
      )}\n`,
    );
  else
    secvmOutput.write(
      `${table(
        ["SECVM", "HOST VM", "STATE", "TARGETS", "ALERTS", "RESTARTS"],
        list.map((w) => [
          w.vm.secvmId,
          w.hostVm,
          w.vm.state,
          w.vm.targets.map((t) => t.guestId).join(","),
          String(w.vm.alerts.last),
          String(w.vm.restarts),
        ]),
      )}\n`,
    );
}

export async function secvmAlerts(o: SecVmCliOptions): Promise<void> {
  const out = outputOf(o);
  const list = await secvms(stateOf(o), o.secvm);
  const head = ["SEQ", "TIME", "SECVM", "TARGET", "MONITOR", "SEVERITY", "SUMMARY"];
  const print = (w: Where, page: AlertPageAnswer) => {
    if (out === "json") {
      // One JSON object per line when following (a stream); one array otherwise.
      for (const a of page.alerts) secvmOutput.write(`${JSON.stringify({ secvm: w.vm.secvmId, ...a })}\n`);
    } else if (page.alerts.length > 0) secvmOutput.write(`${table(head, alertRows(w, page))}\n`);
    if (page.missed > 0)
      process.stderr.write(`secvm ${w.vm.secvmId}: ${page.missed} alerts evicted before they were read\n`);
  };
  if (!o.follow) {
    const pages = await Promise.all(
      list.map(async (w) => ({ w, page: await w.client.secVmAlerts(w.vm.secvmId, { limit: 1000 }) })),
    );
    if (out === "json")
      secvmOutput.write(
        `${JSON.stringify(
          pages.flatMap(({ w, page }) => page.alerts.map((a) => ({ secvm: w.vm.secvmId, ...a }))),
          null,
          2,
        )}\n`,
      );
    else {
      const rows = pages.flatMap(({ w, page }) => alertRows(w, page));
      secvmOutput.write(rows.length > 0 ? `${table(head, rows)}\n` : "no alerts\n");
    }
    return;
  }
  const until = o.followMs ? Date.now() + Number(o.followMs) : Number.POSITIVE_INFINITY;
  let stop = false;
  process.once("SIGINT", () => {
    stop = true;
  });
  await Promise.all(
    list.map(async (w) => {
      let after = 0;
      while (!stop && Date.now() < until) {
        const waitMs = Math.max(0, Math.min(5000, until - Date.now()));
        const page = await w.client.secVmAlerts(w.vm.secvmId, { after, limit: 500, waitMs });
        print(w, page);
        after = page.next;
      }
    }),
  );
}
