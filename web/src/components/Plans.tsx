import { useState } from "react";
import { clock } from "../format.ts";
import type { Plan, PlanAction } from "../types.ts";

const SHOWN_ACTIONS = 6;

/** Plans waiting for approval (Approve / Cancel), and the latest decided ones. */
export function Plans({
  proposed,
  recent,
  onApprove,
  onCancel,
}: {
  proposed: readonly Plan[];
  recent: readonly Plan[];
  onApprove: (id: number) => Promise<void>;
  onCancel: (id: number) => Promise<void>;
}) {
  return (
    <>
      {proposed.length === 0 ? (
        <p className="empty" data-testid="no-proposed-plans">
          No plan is waiting for approval.
        </p>
      ) : (
        <ul className="plans" aria-label="Plans waiting for approval">
          {proposed.map((p) => (
            <li key={p.id}>
              <PlanCard plan={p} onApprove={onApprove} onCancel={onCancel} />
            </li>
          ))}
        </ul>
      )}
      {recent.length > 0 && (
        <details className="recent-plans">
          <summary>Recent plans ({recent.length})</summary>
          <table className="compact-table">
            <thead>
              <tr>
                <th scope="col">Plan</th>
                <th scope="col">Status</th>
                <th scope="col">Actions</th>
                <th scope="col">Source</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {recent.map((p) => (
                <tr key={p.id} data-testid="recent-plan" data-plan-id={p.id} data-status={p.status}>
                  <td>#{p.id}</td>
                  <td>
                    <span className={`badge badge-${p.status}`}>{p.status}</span>
                  </td>
                  <td>{summarize(p.actions)}</td>
                  <td>{p.source}</td>
                  <td className="num">{clock(p.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </details>
      )}
    </>
  );
}

function PlanCard({
  plan,
  onApprove,
  onCancel,
}: {
  plan: Plan;
  onApprove: (id: number) => Promise<void>;
  onCancel: (id: number) => Promise<void>;
}) {
  const [busy, setBusy] = useState<"approve" | "cancel" | undefined>();
  const [error, setError] = useState<string | undefined>();
  const moves = plan.actions.filter((a) => a.kind === "migrate").length;
  const run = async (what: "approve" | "cancel") => {
    setBusy(what);
    setError(undefined);
    try {
      await (what === "approve" ? onApprove : onCancel)(plan.id);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
      setBusy(undefined);
    }
  };
  const titleId = `plan-${plan.id}-title`;
  return (
    <article
      className="plan"
      data-testid="plan-card"
      data-plan-id={plan.id}
      data-moves={moves}
      aria-labelledby={titleId}
    >
      <header>
        <h3 id={titleId}>Plan #{plan.id}</h3>
        <span className="muted small">
          {plan.source} · {clock(plan.createdAt)}
        </span>
      </header>
      <p className="plan-summary">{summarize(plan.actions)}</p>
      <ol className="actions">
        {plan.actions.slice(0, SHOWN_ACTIONS).map((a) => (
          <li key={a.idx}>{describe(a)}</li>
        ))}
        {plan.actions.length > SHOWN_ACTIONS && (
          <li className="muted">…and {plan.actions.length - SHOWN_ACTIONS} more</li>
        )}
      </ol>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="buttons">
        <button
          type="button"
          className="primary"
          onClick={() => run("approve")}
          disabled={busy !== undefined}
          data-testid="approve-button"
          aria-label={`Approve plan ${plan.id}`}
        >
          {busy === "approve" ? "Approving…" : "Approve"}
        </button>
        <button
          type="button"
          onClick={() => run("cancel")}
          disabled={busy !== undefined}
          data-testid="cancel-button"
          aria-label={`Cancel plan ${plan.id}`}
        >
          {busy === "cancel" ? "Cancelling…" : "Cancel"}
        </button>
      </div>
    </article>
  );
}

export function summarize(actions: readonly PlanAction[]): string {
  const moves = actions.filter((a) => a.kind === "migrate");
  const acquire = actions.filter((a) => a.kind === "acquire-host-vm").length;
  const release = actions.filter((a) => a.kind === "release-host-vm").length;
  const rejuvenate = actions.filter((a) => a.kind === "rejuvenate").length;
  const coMigrate = actions.filter((a) => a.kind === "co-migrate").length;
  const mech = new Map<string, number>();
  for (const m of moves) if (m.kind === "migrate") mech.set(m.mechanism, (mech.get(m.mechanism) ?? 0) + 1);
  const parts: string[] = [];
  if (moves.length > 0)
    parts.push(
      `${moves.length} migration${moves.length === 1 ? "" : "s"} (${[...mech].map(([k, n]) => `${n} ${k}`).join(", ")})`,
    );
  if (acquire > 0) parts.push(`acquire ${acquire} host VM${acquire === 1 ? "" : "s"}`);
  if (release > 0) parts.push(`release ${release} host VM${release === 1 ? "" : "s"}`);
  if (rejuvenate > 0) parts.push(`rejuvenate ${rejuvenate} host VM${rejuvenate === 1 ? "" : "s"}`);
  if (coMigrate > 0) parts.push(`${coMigrate} co-migration${coMigrate === 1 ? "" : "s"}`);
  return parts.join(" · ") || "no actions";
}

function describe(a: PlanAction): string {
  switch (a.kind) {
    case "migrate": {
      const to = "hostVm" in a.to ? a.to.hostVm : `new host VM #${a.to.acquire + 1}`;
      return `${a.guest}: ${a.from} → ${to} (${a.mechanism}${a.reason ? `, ${a.reason}` : ""})`;
    }
    case "acquire-host-vm":
      return `acquire a ${a.type} host VM${a.server ? ` on ${a.server}` : ""}`;
    case "release-host-vm":
      return `release ${a.hostVm}`;
    case "rejuvenate":
      return `rejuvenate ${a.hostVm}`;
    case "co-migrate": {
      const to = "hostVm" in a.to ? a.to.hostVm : `new host VM #${a.to.acquire + 1}`;
      return `co-migrate ${a.members.map((m) => `${m.guest} (${m.from}, ${m.mechanism})`).join(" + ")} → ${to} in lock-step (${a.reason})`;
    }
  }
}
