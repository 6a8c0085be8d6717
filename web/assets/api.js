// The API client of the dashboard: the token kept in the tab's session storage, every call with
// `Authorization: Bearer`, an error answer turned into an ApiError carrying the API's message.
// The API is this page's own origin, unless the page says otherwise in
// `<meta name="berth-api" content="<the API's base URL>">` (a copy written by `berth export-dashboard` and
// served elsewhere; the API must list that origin in `api.cors_origins`).

const KEY = "berth.token";
const SCOPES = ["metrics", "read", "deploy", "admin"];

// Where the API is: "" for this origin, else its base URL without a trailing slash.
export const API_BASE = (document.querySelector('meta[name="berth-api"]')?.content || "").replace(/\/+$/, "");

// The address of the API's `path` (which starts with /api/ or /).
export const apiUrl = (path) => API_BASE + path;

export const session = {
  token: sessionStorage.getItem(KEY),
  // The token's scope once known (`probeScope`), else null.
  scope: null,
};

export function signIn(token) {
  session.token = token.trim();
  session.scope = null;
  sessionStorage.setItem(KEY, session.token);
}

export function signOut() {
  session.token = null;
  session.scope = null;
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// `method` `/api/v1<path>`, with a JSON body when `body` is given; the decoded answer, null for
// 204.
export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(apiUrl(`/api/v1${path}`), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    const where = API_BASE ? ` at ${API_BASE}` : "";
    throw new ApiError(0, `cannot reach the API${where}: ${e.message}`);
  }
  if (r.status === 204) return null;
  const text = await r.text();
  let v = null;
  try {
    v = text ? JSON.parse(text) : null;
  } catch {
    v = null;
  }
  if (!r.ok) {
    const err = new ApiError(r.status, (v && v.error) || `HTTP ${r.status}`);
    if (r.status === 403) learnScope(err.message);
    throw err;
  }
  return v;
}

// A 403 says "this token's scope is read; POST … needs deploy": what the token may do is known
// from then on.
function learnScope(message) {
  const m = /scope is (metrics|read|deploy|admin)\b/.exec(message);
  if (m) session.scope = m[1];
}

// What the token may do, asked up front: `GET /api/v1/tokens` answers only an admin token, and
// its 403 names the scope of any other. Null when the answer says neither.
export async function probeScope() {
  try {
    await api("GET", "/tokens");
    session.scope = "admin";
  } catch (e) {
    if (e.status !== 403) throw e;
  }
  return session.scope;
}

// Whether the token may do what needs `needed`, and if not, why (a sentence to show beside the
// disabled control). An unknown scope allows: the API's 403 is then the answer.
export function allowed(needed, what) {
  if (!session.scope || SCOPES.indexOf(session.scope) >= SCOPES.indexOf(needed)) return { ok: true };
  return {
    ok: false,
    reason: `This token's scope is ${session.scope}: ${what} needs ${needed === "admin" ? "an" : "a"} ${needed} token.`,
  };
}
