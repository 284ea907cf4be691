// The dashboard's REST client: tokens in sessionStorage, one refresh at a time,
// the contract's JSON errors as ApiError, and the monitor's event stream.

const BASE = "/api/v1";
const KEYS = {
  access: "taskforge.access_token",
  refresh: "taskforge.refresh_token",
  email: "taskforge.email",
};

export class ApiError extends Error {
  constructor(status, message, errors = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.errors = errors;
  }
}

export const session = {
  get accessToken() {
    return sessionStorage.getItem(KEYS.access);
  },
  get refreshToken() {
    return sessionStorage.getItem(KEYS.refresh);
  },
  get email() {
    return sessionStorage.getItem(KEYS.email) ?? "";
  },
  get active() {
    return Boolean(this.accessToken);
  },
  save(tokens, email) {
    sessionStorage.setItem(KEYS.access, tokens.access_token);
    if (tokens.refresh_token) sessionStorage.setItem(KEYS.refresh, tokens.refresh_token);
    if (email !== undefined) sessionStorage.setItem(KEYS.email, email);
  },
  clear() {
    for (const key of Object.values(KEYS)) sessionStorage.removeItem(key);
  },
};

let sessionEnded = () => {};
let refreshing = null;

/** Call `listener(message)` when the session ends on its own (revoked, refresh refused). */
export function onSessionEnd(listener) {
  sessionEnded = listener;
}

async function send(method, path, body, token) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  try {
    return await fetch(BASE + path, init);
  } catch {
    throw new ApiError(0, "The server cannot be reached");
  }
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

async function parse(response) {
  if (response.status === 204) return null;
  const data = await readBody(response);
  if (!response.ok) {
    const message = typeof data?.error === "string" ? data.error : `HTTP ${response.status}`;
    throw new ApiError(response.status, message, data?.errors ?? null);
  }
  return data;
}

/** Exchange the refresh token for new tokens; concurrent callers share one request. */
export function refresh() {
  refreshing ??= (async () => {
    const token = session.refreshToken;
    if (!token) return false;
    const response = await send("POST", "/auth/refresh", { refresh_token: token });
    if (!response.ok) return false;
    session.save(await response.json());
    return true;
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

function endSession(message) {
  session.clear();
  sessionEnded(message);
}

/** An authenticated call; answers the body, null for 204, or throws ApiError. */
export async function api(method, path, body) {
  const used = session.accessToken;
  let response = await send(method, path, body, used);
  if (response.status === 401) {
    const { error = "" } = (await readBody(response.clone())) ?? {};
    const expired = /expired/i.test(error);
    // Another call may have refreshed the token meanwhile: then just retry.
    if (expired && (session.accessToken !== used || (await refresh()))) {
      response = await send(method, path, body, session.accessToken);
    }
    // A call that outlived a logout says nothing: the session is already over.
    if (response.status === 401 && used && session.active) {
      endSession(expired ? "Your session expired: log in again." : "Please log in again.");
    }
  }
  return parse(response);
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);

/** Build a query string from the non-empty values of `params`. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function login(email, password) {
  const response = await send("POST", "/auth/login", { email, password });
  session.save(await parse(response), email);
}

export async function logout() {
  const refreshToken = session.refreshToken;
  try {
    await send("POST", "/auth/logout", refreshToken ? { refresh_token: refreshToken } : undefined,
      session.accessToken);
  } finally {
    session.clear();
  }
}

/**
 * Open the monitor's server-sent events. EventSource cannot send headers, and a token in
 * the URL would reach access logs: the stream opens with a single-use ticket, asked for
 * with the session's token. `handlers` maps event names to functions of the parsed JSON data.
 */
export async function openEvents(handlers, { onOpen, onError }) {
  const { ticket } = await post("/monitor/events/tickets");
  const url = `${BASE}/monitor/events${query({ ticket })}`;
  const source = new EventSource(url);
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      handle(data);
    });
  }
  source.addEventListener("open", onOpen);
  source.addEventListener("error", onError);
  return source;
}
