// The shell: session, navigation by role, and the page for the current path.
import { useCallback, useEffect, useMemo, useState } from "react";
import { createApi } from "./api";
import { AppContext, type AppContextValue } from "./context";
import { Dashboard } from "./pages/Dashboard";
import { Home, SignIn } from "./pages/Home";
import { OperatorQueue } from "./pages/OperatorQueue";
import { Track } from "./pages/Track";
import { Link, match, usePath } from "./router";
import { isOperator, loadSession, storeSession, type Session } from "./session";
import type { UiConfig } from "./types";

export function App() {
  const [session, setSession] = useState<Session | null>(() => loadSession());
  const [signInMessage, setSignInMessage] = useState<string | undefined>();
  const [config, setConfig] = useState<UiConfig>({});
  const path = usePath();
  const route = match(path);

  const signOut = useCallback((reason?: string) => {
    storeSession(null);
    setSession(null);
    setSignInMessage(reason);
  }, []);
  const signIn = (next: Session) => {
    storeSession(next);
    setSession(next);
    setSignInMessage(undefined);
  };

  const api = useMemo(
    () => createApi(() => session?.token ?? null, () => signOut("The gateway refused your token. Sign in again.")),
    [session, signOut],
  );
  useEffect(() => {
    api.get<UiConfig>("/api/v1/ui-config").then(setConfig, () => setConfig({}));
  }, [api]);

  const value: AppContextValue = { session, api, config, signOut };
  const operator = isOperator(session);
  return (
    <AppContext.Provider value={value}>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="top-bar">
        <nav aria-label="Main">
          <Link to="/" className="brand">
            Deliveries
          </Link>
          {operator && (
            <>
              <Link to="/ops" aria-current={route.page === "dashboard" ? "page" : undefined}>
                Dashboard
              </Link>
              <Link to="/ops/queue" aria-current={route.page === "queue" ? "page" : undefined}>
                Operator queue
              </Link>
            </>
          )}
        </nav>
        {session && (
          <div className="who">
            <span>
              {session.sub} <span className="muted">({session.roles.join(", ")})</span>
            </span>
            <button type="button" className="link-button" onClick={() => signOut()}>
              Sign out
            </button>
          </div>
        )}
      </header>
      <main id="main">
        {!session ? (
          <SignIn onSignIn={signIn} message={signInMessage} />
        ) : route.page === "home" ? (
          <Home />
        ) : route.page === "track" ? (
          <Track key={route.id} id={route.id} />
        ) : (route.page === "dashboard" || route.page === "queue") && !operator ? (
          <section className="narrow">
            <h1>Not for your role</h1>
            <p>This page is for operators. <Link to="/">Back to your deliveries</Link>.</p>
          </section>
        ) : route.page === "dashboard" ? (
          <Dashboard />
        ) : route.page === "queue" ? (
          <OperatorQueue />
        ) : (
          <section className="narrow">
            <h1>Page not found</h1>
            <p>
              There is no page at <code>{path}</code>. <Link to="/">Go to the start page</Link>.
            </p>
          </section>
        )}
      </main>
    </AppContext.Provider>
  );
}
