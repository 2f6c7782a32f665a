import { useEffect, useRef, useState } from "react";
import { useApp } from "./context";
import { LiveSocket, type Connection } from "./live";
import type { SocketMessage } from "./types";

/** A live socket on `path`, authenticated as the signed-in user, while the component shows. */
export function useLiveSocket(path: string, onMessage: (message: SocketMessage) => void): Connection {
  const { api } = useApp();
  const [connection, setConnection] = useState<Connection>({ status: "connecting", attempt: 1 });
  const handler = useRef(onMessage);
  handler.current = onMessage;
  useEffect(() => {
    const socket = new LiveSocket({
      url: () => api.socketUrl(path),
      onMessage: (message) => handler.current(message),
      onConnection: setConnection,
    });
    socket.start();
    const online = () => socket.retryNow();
    window.addEventListener("online", online);
    return () => {
      window.removeEventListener("online", online);
      socket.stop();
    };
    // The client changes with the token; a new token opens a new socket.
  }, [path, api]);
  return connection;
}

/** Calls `fn` every `ms`, and never twice at once. */
export function useInterval(fn: () => void, ms: number) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    const id = setInterval(() => saved.current(), ms);
    return () => clearInterval(id);
  }, [ms]);
}

/** A function that runs `fn` once, `ms` after the last of a burst of calls. */
export function useDebounced(fn: () => void, ms: number): () => void {
  const saved = useRef(fn);
  saved.current = fn;
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => () => {
    if (timer.current) clearTimeout(timer.current);
  }, []);
  const [debounced] = useState(() => () => {
    if (timer.current) clearTimeout(timer.current);
    timer.current = setTimeout(() => saved.current(), ms);
  });
  return debounced;
}
