// The gateway's REST API: JSON in, JSON out, errors as application/problem+json.

export class ApiProblem extends Error {
  readonly status: number;
  readonly title: string;
  readonly body: Record<string, unknown>;

  constructor(status: number, body: Record<string, unknown>) {
    const detail = typeof body.detail === "string" ? body.detail : `request failed (${status})`;
    super(detail);
    this.status = status;
    this.title = typeof body.title === "string" ? body.title : "Request failed";
    this.body = body;
  }
}

export type TokenSource = () => string | null;

export interface ApiClient {
  get<T>(path: string): Promise<T>;
  post<T>(path: string, body: unknown): Promise<T>;
  /** The WebSocket URL of `path`, with the token in the query (browsers cannot set headers). */
  socketUrl(path: string): string;
}

export function createApi(token: TokenSource, onUnauthorized: () => void, base = ""): ApiClient {
  async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    const bearer = token();
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiProblem(0, { title: "Offline", detail: "the service cannot be reached; check your connection" });
    }
    const text = await response.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = { detail: text };
    }
    if (!response.ok) {
      if (response.status === 401) onUnauthorized();
      throw new ApiProblem(response.status, (parsed as Record<string, unknown>) ?? {});
    }
    return parsed as T;
  }

  return {
    get: (path) => request("GET", path),
    post: (path, body) => request("POST", path, body),
    socketUrl(path) {
      const origin = base || window.location.origin;
      const url = new URL(path, origin);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const bearer = token();
      if (bearer) url.searchParams.set("access_token", bearer);
      return url.toString();
    },
  };
}
