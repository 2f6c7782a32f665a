// Sign-in with a token, and for signed-in users the way into their pages.
import { useState, type FormEvent } from "react";
import { useApp } from "../context";
import { MyDeliveries } from "../components/MyDeliveries";
import { Link, navigate } from "../router";
import { TokenError, isCustomer, isOperator, parseToken, type Session } from "../session";

export function SignIn({ onSignIn, message }: { onSignIn: (session: Session) => void; message?: string }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    try {
      onSignIn(parseToken(token));
    } catch (e) {
      setError(e instanceof TokenError ? e.message : "this token cannot be used");
    }
  };
  return (
    <section className="narrow">
      <h1>Sign in</h1>
      {message && (
        <p className="banner banner-error" role="alert">
          {message}
        </p>
      )}
      <form onSubmit={submit} className="stack">
        <label>
          Access token
          <textarea
            name="token"
            value={token}
            rows={4}
            spellCheck={false}
            autoComplete="off"
            aria-invalid={!!error}
            aria-describedby="token-help"
            onChange={(e) => {
              setToken(e.target.value);
              setError(null);
            }}
          />
        </label>
        <p id="token-help" className="muted">
          Paste the token you were given. For local development: <code>make token ROLE=operator SUB=alice</code> or{" "}
          <code>make token ROLE=customer SUB=&lt;customer id&gt;</code>.
        </p>
        {error && (
          <p className="field-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit">Sign in</button>
      </form>
    </section>
  );
}

export function Home() {
  const { session } = useApp();
  const [id, setId] = useState("");
  const [error, setError] = useState<string | null>(null);
  const track = (event: FormEvent) => {
    event.preventDefault();
    const trimmed = id.trim();
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(trimmed)) {
      setError("a delivery number looks like 0f8fad5b-d9cb-469f-a165-70867728950e");
      return;
    }
    navigate(`/track/${trimmed.toLowerCase()}`);
  };
  return (
    <section className="narrow">
      <h1>Deliveries</h1>
      <p>Signed in as {session?.sub}.</p>
      {isCustomer(session) && <MyDeliveries />}
      <form onSubmit={track} className="stack" aria-label="Track a delivery">
        <label>
          Delivery number
          <input
            value={id}
            onChange={(e) => {
              setId(e.target.value);
              setError(null);
            }}
            aria-invalid={!!error}
            placeholder="0f8fad5b-d9cb-469f-a165-70867728950e"
          />
        </label>
        {error && (
          <p className="field-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit">Track</button>
      </form>
      {isOperator(session) && (
        <ul className="plain">
          <li>
            <Link to="/ops">Operations dashboard</Link>
          </li>
          <li>
            <Link to="/ops/queue">Operator queue</Link>
          </li>
        </ul>
      )}
      {!isOperator(session) && !isCustomer(session) && (
        <p className="muted">Your token has no customer or operator role: there is little to see here.</p>
      )}
    </section>
  );
}
