// Says whether the page is live; when it is not, that it is reconnecting and when.
import { useEffect, useState } from "react";
import type { Connection } from "../live";

export function ConnectionBanner({ connection }: { connection: Connection }) {
  const [browserOnline, setBrowserOnline] = useState(navigator.onLine);
  useEffect(() => {
    const on = () => setBrowserOnline(true);
    const off = () => setBrowserOnline(false);
    window.addEventListener("online", on);
    window.addEventListener("offline", off);
    return () => {
      window.removeEventListener("online", on);
      window.removeEventListener("offline", off);
    };
  }, []);

  if (!browserOnline) {
    return (
      <p className="banner banner-offline" role="status" data-connection="offline">
        <span aria-hidden="true">⚠ </span>You are offline. Updates resume when your connection is back.
      </p>
    );
  }
  switch (connection.status) {
    case "live":
      return (
        <p className="live-indicator" role="status" data-connection="live">
          <span aria-hidden="true">● </span>Live
        </p>
      );
    case "connecting":
      return (
        <p className="live-indicator" role="status" data-connection="connecting">
          <span aria-hidden="true">… </span>Connecting to live updates
        </p>
      );
    case "offline":
      return (
        <p className="banner banner-offline" role="status" data-connection="offline">
          <span aria-hidden="true">⚠ </span>Offline: live updates are interrupted. Reconnecting in{" "}
          {Math.max(1, Math.round(connection.retryInMs / 1000))} s.
        </p>
      );
  }
}
