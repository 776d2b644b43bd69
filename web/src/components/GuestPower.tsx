import { useCallback, useEffect, useId, useState } from "react";
import { type Api, HttpError } from "../api.ts";
import { mib } from "../format.ts";
import {
  ACTION_LABELS,
  applies,
  confirmText,
  EVENTS_PAGE,
  POWER_ACTIONS,
  type PowerAction,
  powerBody,
  SHUTDOWN_WAIT_MS,
} from "../power.ts";
import type { GuestEvent, Inventory, PowerResult } from "../types.ts";
import type { StreamListener } from "../useCloud.ts";

/** Server-sent event kinds that change what this panel shows. */
const LIVE_KINDS = new Set(["vm.power", "vm.event", "vm.start", "vm.stop", "migration.completed"]);
/** While the event stream is down: reload this often (while it is up, its events suffice). */
const POLL_MS = 3000;

/**
 * A guest's virtual AMT: power and boot buttons (each confirmed; only those that apply to
 * the guest's power state and boot mode are enabled), its inventory, and its event log
 * (paged, newest first, with who did what), reloaded when the event stream names the guest
 * (every logged entry is announced as vm.event), polled only while the stream is down.
 */
export function GuestPower({
  guestId,
  api,
  subscribe,
  live,
}: {
  guestId: string;
  api: Api;
  subscribe: (listener: StreamListener) => () => void;
  /** Whether the event stream is connected. */
  live: boolean;
}) {
  const [inv, setInv] = useState<Inventory | undefined>();
  const [invError, setInvError] = useState<string | undefined>();
  const [events, setEvents] = useState<GuestEvent[]>([]);
  const [total, setTotal] = useState(0);
  const [offset, setOffset] = useState(0);
  const [pending, setPending] = useState<PowerAction | undefined>();
  const [force, setForce] = useState(false);
  const [busy, setBusy] = useState<PowerAction | undefined>();
  const [result, setResult] = useState<PowerResult | undefined>();
  const [error, setError] = useState<string | undefined>();
  const forceId = useId();
  const base = `/api/vms/${encodeURIComponent(guestId)}`;

  const loadInventory = useCallback(async () => {
    try {
      setInv(await api.get<Inventory>(`${base}/inventory`));
      setInvError(undefined);
    } catch (e) {
      setInvError(e instanceof HttpError ? e.message : String(e));
    }
  }, [api, base]);

  const loadEvents = useCallback(async () => {
    try {
      const page = await api.page<GuestEvent>(`${base}/events?limit=${EVENTS_PAGE}&offset=${offset}`);
      setEvents(page.rows);
      setTotal(page.total);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  }, [api, base, offset]);

  const reload = useCallback(() => {
    void loadInventory();
    void loadEvents();
  }, [loadInventory, loadEvents]);

  // A page change loads that page (loadEvents changes with the offset).
  useEffect(() => {
    void loadEvents();
  }, [loadEvents]);

  useEffect(() => {
    void loadInventory();
  }, [loadInventory]);

  useEffect(
    () =>
      subscribe((kind, data) => {
        if (LIVE_KINDS.has(kind) && (data.id === guestId || data.guest === guestId)) reload();
      }),
    [guestId, subscribe, reload],
  );

  useEffect(() => {
    if (live) return;
    const t = window.setInterval(reload, POLL_MS);
    return () => window.clearInterval(t);
  }, [live, reload]);

  const ask = (action: PowerAction) => {
    setPending(action);
    setForce(false);
    setError(undefined);
  };

  const confirm = async () => {
    const action = pending;
    if (!action) return;
    setPending(undefined);
    setBusy(action);
    setError(undefined);
    setResult(undefined);
    try {
      const r = await api.call<PowerResult>("POST", `${base}/power`, powerBody(action, { force }));
      setResult(r);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(undefined);
      reload();
    }
  };

  const power = inv?.power;
  return (
    <div className="amt" data-testid="guest-power">
      <p className="amt-state">
        Power{" "}
        <strong data-testid="power-state" data-power={power ?? ""} data-boot={inv?.boot ?? ""}>
          {power ?? "…"}
        </strong>
        {inv && (
          <span className="muted">
            {" "}
            · {inv.boot} boot{inv.qemuStatus ? ` · QEMU ${inv.qemuStatus}` : ""}
          </span>
        )}
      </p>
      {invError && (
        <p className="error" role="alert" data-testid="power-unavailable">
          {invError}
        </p>
      )}
      <fieldset className="buttons" aria-label="Power and boot">
        {POWER_ACTIONS.map((a) => (
          <button
            key={a}
            type="button"
            onClick={() => ask(a)}
            disabled={!inv || busy !== undefined || pending !== undefined || !applies(a, inv.power, inv.boot)}
            data-testid={`power-${a}`}
          >
            {busy === a ? `${ACTION_LABELS[a]}…` : ACTION_LABELS[a]}
          </button>
        ))}
      </fieldset>
      {pending && (
        <div className="confirm" role="alertdialog" aria-label="Confirm" data-testid="power-confirm">
          <p>{confirmText(pending, guestId)}</p>
          {pending === "shutdown" && (
            <p>
              <input
                id={forceId}
                type="checkbox"
                checked={force}
                onChange={(e) => setForce(e.target.checked)}
                data-testid="power-force"
              />{" "}
              <label htmlFor={forceId}>
                Power off hard if it has not shut down within {SHUTDOWN_WAIT_MS / 1000} s
              </label>
            </p>
          )}
          <div className="buttons">
            <button type="button" className="primary" onClick={confirm} data-testid="power-confirm-yes">
              {ACTION_LABELS[pending]}
            </button>
            <button type="button" onClick={() => setPending(undefined)} data-testid="power-confirm-no">
              Cancel
            </button>
          </div>
        </div>
      )}
      {result && (
        <p role="status" data-testid="power-result" data-outcome={result.outcome}>
          {result.outcome === "ignored"
            ? `The guest did not shut down within ${SHUTDOWN_WAIT_MS / 1000} s (no ACPI handler?): still ${result.power}.`
            : `${result.detail} (now ${result.power}, ${result.boot} boot)`}
          {result.outcome === "ignored" && result.power !== "off" && (
            <>
              {" "}
              <button type="button" className="link" onClick={() => ask("off")} data-testid="power-force-now">
                Power off hard
              </button>
            </>
          )}
        </p>
      )}
      {error && (
        <p className="error" role="alert" data-testid="power-error">
          {error}
        </p>
      )}

      {inv && <InventoryFacts inv={inv} />}

      <h3>
        Event log <span className="count">{total}</span>
      </h3>
      {events.length === 0 ? (
        <p className="muted">nothing logged yet</p>
      ) : (
        <table className="compact-table amt-events" data-testid="guest-events">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">What</th>
              <th scope="col">Who</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e) => (
              <tr
                key={e.id}
                data-testid="guest-event"
                data-event-id={e.id}
                data-kind={e.kind}
                data-actor={e.actor ?? ""}
              >
                <td>{new Date(e.at * 1000).toLocaleTimeString()}</td>
                <td>{e.kind}</td>
                <td>{e.actor ?? (e.kind.startsWith("guest.") ? "the guest" : "the cloud")}</td>
                <td>{e.detail}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {total > EVENTS_PAGE && (
        <div className="buttons pager">
          <button
            type="button"
            disabled={offset === 0}
            onClick={() => setOffset(Math.max(0, offset - EVENTS_PAGE))}
            data-testid="events-newer"
          >
            Newer
          </button>
          <span className="muted" data-testid="events-range">
            {offset + 1}–{Math.min(offset + EVENTS_PAGE, total)} of {total}
          </span>
          <button
            type="button"
            disabled={offset + EVENTS_PAGE >= total}
            onClick={() => setOffset(offset + EVENTS_PAGE)}
            data-testid="events-older"
          >
            Older
          </button>
        </div>
      )}
    </div>
  );
}

function InventoryFacts({ inv }: { inv: Inventory }) {
  return (
    <>
      <h3>Inventory</h3>
      <dl className="facts" data-testid="guest-inventory">
        <dt>vCPUs</dt>
        <dd data-testid="inventory-cpus">{inv.cpus}</dd>
        <dt>Memory</dt>
        <dd>{mib(inv.memoryMiB)}</dd>
        <dt>Disks</dt>
        <dd>
          {inv.disks.length === 0
            ? "none"
            : inv.disks
                .map(
                  (d) =>
                    `${d.id} (${d.format}${d.sizeMiB !== null ? `, ${mib(d.sizeMiB)}` : ""}${d.readOnly ? ", read-only" : ""})`,
                )
                .join(", ")}
        </dd>
        <dt>NICs</dt>
        <dd data-testid="inventory-nics">
          {inv.nics.length === 0 ? "none" : inv.nics.map((n) => `${n.id} ${n.mac} (${n.backend})`).join(", ")}
        </dd>
        <dt>Serial ports</dt>
        <dd>{inv.serials.map((s) => `${s.id}${s.logged ? " (logged)" : ""}`).join(", ") || "none"}</dd>
        <dt>Firmware</dt>
        <dd>{inv.firmware}</dd>
        <dt>Kernel</dt>
        <dd>
          {inv.kernel}
          {inv.initrd && <span className="muted"> + {inv.initrd}</span>}
        </dd>
        <dt>Command line</dt>
        <dd>
          <code data-testid="inventory-cmdline">{inv.commandLine}</code>
        </dd>
        <dt>Panic device</dt>
        <dd>{inv.pvpanic ? "pvpanic" : "none"}</dd>
        <dt>Placement</dt>
        <dd>
          {inv.hostVm} <span className="muted">on {inv.server}</span>
        </dd>
      </dl>
    </>
  );
}
