// The signed-in user: a bearer token (the gateway's dev tokens or any token it accepts) and
// what its claims say. The gateway verifies every request; the claims here only decide what
// the pages offer.

export type Role = "customer" | "partner" | "operator" | "payment_service" | "order_management" | "admin";

export interface Session {
  token: string;
  sub: string;
  roles: Role[];
  /** Seconds since the epoch. */
  expiresAt?: number;
}

const STORAGE_KEY = "delivery.session.token";

export class TokenError extends Error {}

function decodeSegment(segment: string): unknown {
  const base64 = segment.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** Reads a JWT's claims (without verifying it: that is the gateway's job). */
export function parseToken(raw: string, now = Date.now()): Session {
  const token = raw.trim().replace(/^Bearer\s+/i, "");
  const parts = token.split(".");
  if (parts.length !== 3) throw new TokenError("this is not a token: a JWT has three parts separated by dots");
  let claims: Record<string, unknown>;
  try {
    claims = decodeSegment(parts[1]) as Record<string, unknown>;
  } catch {
    throw new TokenError("the token's claims cannot be read");
  }
  if (typeof claims.sub !== "string" || !Array.isArray(claims.roles)) {
    throw new TokenError("the token has no subject or no roles");
  }
  const expiresAt = typeof claims.exp === "number" ? claims.exp : undefined;
  if (expiresAt !== undefined && expiresAt * 1000 <= now) {
    throw new TokenError("the token has expired; ask for a new one");
  }
  return { token, sub: claims.sub, roles: claims.roles as Role[], expiresAt };
}

export function hasRole(session: Session | null, ...roles: Role[]): boolean {
  return !!session && session.roles.some((r) => roles.includes(r));
}

export const isOperator = (s: Session | null) => hasRole(s, "operator", "admin");
export const isCustomer = (s: Session | null) => hasRole(s, "customer");

export function loadSession(): Session | null {
  const stored = window.localStorage.getItem(STORAGE_KEY);
  if (!stored) return null;
  try {
    return parseToken(stored);
  } catch {
    window.localStorage.removeItem(STORAGE_KEY);
    return null;
  }
}

export function storeSession(session: Session | null) {
  if (session) window.localStorage.setItem(STORAGE_KEY, session.token);
  else window.localStorage.removeItem(STORAGE_KEY);
  syncCodecSession(session);
}

/**
 * Operators get the gateway's codec cookie (HttpOnly, sent only to /codec), so a Temporal Web UI
 * on the same host that includes credentials shows them decoded payloads; signing out removes
 * it. Best effort: the service's own pages never depend on it.
 */
function syncCodecSession(session: Session | null) {
  const request: RequestInit =
    session && isOperator(session)
      ? { method: "POST", headers: { Authorization: `Bearer ${session.token}` } }
      : { method: "DELETE" };
  fetch("/codec/session", request).catch(() => undefined);
}
