import { useState } from "react";
import { clock, duration, pct } from "../format.ts";
import type { Migration } from "../types.ts";
import { Bar } from "./Bar.tsx";

const PAST_SHOWN = 15;

/** Running migrations first, then the finished ones, newest first. */
export function Migrations({
  migrations,
  now,
}: {
  migrations: readonly Migration[];
  now: number | undefined;
}) {
  const [all, setAll] = useState(false);
  const active = migrations.filter((m) => m.status === "running");
  const past = migrations.filter((m) => m.status !== "running");
  const shownPast = all ? past : past.slice(0, PAST_SHOWN);
  if (migrations.length === 0) return <p className="empty">No migrations yet.</p>;
  return (
    <div className="table-wrap">
      <table className="migrations" data-testid="migrations-table">
        <caption className="sr-only">
          Migrations: {active.length} running, {past.length} finished
        </caption>
        <thead>
          <tr>
            <th scope="col">Guest</th>
            <th scope="col">From → to</th>
            <th scope="col">Mechanism</th>
            <th scope="col">Status</th>
            <th scope="col" className="col-progress">
              Progress
            </th>
            <th scope="col">Started</th>
            <th scope="col">Took</th>
            <th scope="col">Plan</th>
          </tr>
        </thead>
        <tbody>
          {active.length > 0 && (
            <tr className="group">
              <th colSpan={8} scope="rowgroup">
                Active ({active.length})
              </th>
            </tr>
          )}
          {active.map((m) => (
            <Row key={m.id} m={m} now={now} />
          ))}
          {past.length > 0 && (
            <tr className="group">
              <th colSpan={8} scope="rowgroup">
                Past ({past.length})
              </th>
            </tr>
          )}
          {shownPast.map((m) => (
            <Row key={m.id} m={m} now={now} />
          ))}
        </tbody>
      </table>
      {past.length > PAST_SHOWN && (
        <button type="button" className="link" onClick={() => setAll(!all)} aria-expanded={all}>
          {all ? "Show fewer" : `Show all ${past.length} past migrations`}
        </button>
      )}
    </div>
  );
}

function Row({ m, now }: { m: Migration; now: number | undefined }) {
  const took =
    m.finishedAt !== null ? m.finishedAt - m.startedAt : now !== undefined ? now - m.startedAt : NaN;
  const eta = m.detail.etaSeconds;
  return (
    <tr
      data-testid="migration-row"
      data-migration-id={m.id}
      data-status={m.status}
      data-mechanism={m.mechanism}
      data-plan={m.plan ?? ""}
      className={`status-${m.status}`}
    >
      <td>
        <strong>{m.guest}</strong> <span className="muted small">{m.tenant}</span>
      </td>
      <td className="route">
        {m.from} <span aria-hidden="true">→</span>
        <span className="sr-only"> to </span> {m.to}
      </td>
      <td>
        <span className={`mech mech-${m.mechanism}`}>{m.mechanism}</span>
      </td>
      <td>
        <span className={`badge badge-${m.status}`} data-testid="migration-status">
          {m.status}
        </span>
        {m.error && (
          <span className="error small" title={m.error}>
            {" "}
            {m.error}
          </span>
        )}
      </td>
      <td className="col-progress">
        <Bar
          label={`Progress of ${m.guest}`}
          value={m.status === "completed" ? 1 : m.progress}
          kind="progress"
          compact
          text={
            m.status === "running" && eta !== undefined && eta !== null
              ? `${pct(m.progress)} · ${duration(eta)} left`
              : pct(m.status === "completed" ? 1 : m.progress)
          }
        />
      </td>
      <td className="num">{clock(m.startedAt)}</td>
      <td className="num">{duration(took)}</td>
      <td className="num">{m.plan !== null ? `#${m.plan}` : "–"}</td>
    </tr>
  );
}
