/** A labelled load bar (a meter): CPU or memory of a host VM, progress of a migration. */
export function Bar({
  label,
  value,
  text,
  kind = "load",
  compact = false,
}: {
  label: string;
  /** Fraction 0..1 (values above 1 show as full, and red). */
  value: number | null;
  text?: string;
  kind?: "load" | "progress";
  compact?: boolean;
}) {
  const v = value === null || !Number.isFinite(value) ? 0 : Math.max(0, value);
  const level = kind === "progress" ? "progress" : v >= 0.9 ? "high" : v >= 0.7 ? "mid" : "low";
  const shown = text ?? (value === null ? "–" : `${Math.round(v * 100)}%`);
  return (
    <div className={`bar-row${compact ? " compact" : ""}`}>
      {kind === "progress" ? (
        <progress
          className="sr-only"
          max={1}
          value={Math.min(v, 1)}
          aria-label={label}
          aria-valuetext={shown}
        >
          {shown}
        </progress>
      ) : (
        <meter
          className="sr-only"
          min={0}
          max={1}
          value={Math.min(v, 1)}
          aria-label={label}
          aria-valuetext={shown}
        >
          {shown}
        </meter>
      )}
      <div className={`bar bar-${level}`} aria-hidden="true">
        <div className="bar-fill" style={{ width: `${Math.min(v, 1) * 100}%` }} />
      </div>
      <span className="bar-text" aria-hidden="true">
        {shown}
      </span>
    </div>
  );
}
