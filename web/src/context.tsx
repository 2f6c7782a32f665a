// What every page needs: the session, an API client bound to it, and the gateway's UI settings.
import { createContext, useContext } from "react";
import type { ApiClient } from "./api";
import type { Session } from "./session";
import type { UiConfig } from "./types";

export interface AppContextValue {
  session: Session | null;
  api: ApiClient;
  config: UiConfig;
  signOut: (reason?: string) => void;
}

export const AppContext = createContext<AppContextValue | null>(null);

export function useApp(): AppContextValue {
  const value = useContext(AppContext);
  if (!value) throw new Error("useApp outside AppContext");
  return value;
}

export function workflowUrl(config: UiConfig, deliveryOrderId: string): string | null {
  return config.workflow_url_template?.replace("{delivery_order_id}", encodeURIComponent(deliveryOrderId)) ?? null;
}
