import { type FormEvent, useId, useState } from "react";
import { Api, HttpError } from "../api.ts";

/** Asks for a bearer token and checks it against the API before keeping it. */
export function Login({ onToken, notice }: { onToken: (token: string) => void; notice?: string }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | undefined>(notice);
  const [busy, setBusy] = useState(false);
  const inputId = useId();
  const helpId = useId();

  async function submit(e: FormEvent) {
    e.preventDefault();
    const t = token.trim();
    if (!t) {
      setError("Enter a token.");
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      await new Api(t).get("/api/overview");
      onToken(t);
    } catch (err) {
      setError(
        err instanceof HttpError && err.status === 401
          ? "The controller rejected this token."
          : `Cannot reach the controller: ${err instanceof Error ? err.message : String(err)}`,
      );
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="login">
      <form className="login-box" onSubmit={submit} data-testid="login-form" aria-labelledby="login-title">
        <div className="brand brand-large">
          <Logo />
          <h1 id="login-title">nestcloud</h1>
        </div>
        <label htmlFor={inputId}>Access token</label>
        <input
          id={inputId}
          type="password"
          autoComplete="current-password"
          spellCheck={false}
          value={token}
          onChange={(e) => setToken(e.target.value)}
          aria-describedby={helpId}
          aria-invalid={error ? true : undefined}
          data-testid="token-input"
          // biome-ignore lint/a11y/noAutofocus: the only field on the page
          autoFocus
        />
        <p id={helpId} className="hint">
          <code>nestcloud up</code> prints <code>admin token: …</code> at its first start;{" "}
          <code>nestcloud token show</code> prints it again. A link with <code>#token=…</code> signs in
          directly.
        </p>
        {error && (
          <p className="error" role="alert" data-testid="login-error">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy} data-testid="login-submit">
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

export function Logo() {
  return (
    <svg className="logo" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
      <rect x="1.5" y="1.5" width="21" height="21" rx="5" fill="var(--accent)" />
      <rect x="6" y="6" width="12" height="12" rx="3" fill="none" stroke="#fff" strokeWidth="2" />
      <rect x="10" y="10" width="4" height="4" rx="1" fill="#fff" />
    </svg>
  );
}
