import { lazy, Suspense, useEffect, useId, useRef, useState } from "react";
import type { Api } from "../api.ts";
import { mib, pct } from "../format.ts";
import { AUTOMATION_LEVELS, type Automation, type Guest, type Migration } from "../types.ts";
import type { StreamListener } from "../useCloud.ts";
import { GuestPower } from "./GuestPower.tsx";

// xterm.js is loaded when a console is first opened (it is most of the bundle's weight).
const GuestConsole = lazy(() => import("./GuestConsole.tsx").then((m) => ({ default: m.GuestConsole })));

/**
 * Details of one guest and its own automation level (PATCH /api/vms/:id); a Console tab
 * shows its serial console (GuestConsole, end to end encrypted from this browser); a Power
 * tab its virtual AMT (GuestPower: power and boot buttons, inventory, event log).
 */
export function GuestPanel({
  guest,
  cloudAutomation,
  migrations,
  onClose,
  onAutomation,
  canEdit,
  token,
  api,
  subscribe,
  live,
}: {
  guest: Guest;
  cloudAutomation: Automation | undefined;
  migrations: readonly Migration[];
  onClose: () => void;
  onAutomation: (level: Automation | null) => Promise<void>;
  canEdit: boolean;
  token: string;
  api: Api;
  subscribe: (listener: StreamListener) => () => void;
  /** Whether the event stream is connected (the Power tab polls while it is not). */
  live: boolean;
}) {
  const [tab, setTab] = useState<"details" | "power" | "console">("details");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const selectId = useId();
  const titleId = useId();
  const closeRef = useRef<HTMLButtonElement>(null);
  const mine = migrations.filter((m) => m.guest === guest.id).slice(0, 5);

  useEffect(() => {
    closeRef.current?.focus();
    const onKey = (e: KeyboardEvent) => {
      // Escape belongs to the guest while its console has the focus.
      if (e.key === "Escape" && !(e.target instanceof Element && e.target.closest(".console"))) onClose();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);

  const change = async (value: string) => {
    setBusy(true);
    setError(undefined);
    try {
      await onAutomation(value === "" ? null : (value as Automation));
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  const details = (
    <>
      <dl className="facts">
        <dt>Role</dt>
        <dd>{guest.role === "security" ? "security VM" : "tenant guest"}</dd>
        <dt>Tenant</dt>
        <dd>{guest.tenant}</dd>
        <dt>Placement</dt>
        <dd>
          {guest.hostVm ?? "unplaced"}
          {guest.server && <span className="muted"> on {guest.server}</span>}
        </dd>
        <dt>Power</dt>
        <dd>{guest.powerState}</dd>
        <dt>Size</dt>
        <dd>
          {guest.vcpus} vCPU × {guest.mipsPerVcpu} MIPS · {mib(guest.memoryMiB)}
        </dd>
        <dt>CPU now</dt>
        <dd>{pct(guest.cpu)}</dd>
        {guest.role === "security" && (
          <>
            <dt>Watches</dt>
            <dd>{guest.targets.join(", ")}</dd>
          </>
        )}
      </dl>
      {canEdit && (
        <div className="field">
          <label htmlFor={selectId}>Automation for this guest</label>
          <select
            id={selectId}
            value={guest.automation ?? ""}
            disabled={busy}
            onChange={(e) => change(e.target.value)}
            data-testid="guest-automation-select"
          >
            <option value="">as the cloud ({cloudAutomation ?? "…"})</option>
            {AUTOMATION_LEVELS.map((l) => (
              <option key={l} value={l}>
                {l}
              </option>
            ))}
          </select>
        </div>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {mine.length > 0 && (
        <>
          <h3>Latest migrations</h3>
          <ul className="plain small">
            {mine.map((m) => (
              <li key={m.id}>
                {m.from} → {m.to} · {m.mechanism} · {m.status}
              </li>
            ))}
          </ul>
        </>
      )}
    </>
  );

  return (
    <dialog
      open
      className={tab === "details" ? "panel" : "panel panel-wide"}
      aria-labelledby={titleId}
      data-testid="guest-panel"
    >
      <header>
        <h2 id={titleId}>{guest.id}</h2>
        <button
          type="button"
          ref={closeRef}
          onClick={onClose}
          aria-label="Close guest details"
          className="icon-button"
        >
          ×
        </button>
      </header>
      <div className="tabs" role="tablist">
        <button
          type="button"
          role="tab"
          aria-selected={tab === "details"}
          onClick={() => setTab("details")}
          data-testid="guest-tab-details"
        >
          Details
        </button>
        <button
          type="button"
          role="tab"
          aria-selected={tab === "power"}
          onClick={() => setTab("power")}
          data-testid="guest-tab-power"
        >
          Power
        </button>
        <button
          type="button"
          role="tab"
          aria-selected={tab === "console"}
          onClick={() => setTab("console")}
          data-testid="guest-tab-console"
        >
          Console
        </button>
      </div>
      {tab === "console" ? (
        <Suspense fallback={<p className="muted">loading the console…</p>}>
          <GuestConsole guestId={guest.id} token={token} />
        </Suspense>
      ) : tab === "power" ? (
        <GuestPower guestId={guest.id} api={api} subscribe={subscribe} live={live} />
      ) : (
        details
      )}
    </dialog>
  );
}
