// JSON calls to the gateway; failures become ApiError with the RFC 9457 problem's fields.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.reason = problem.reason || "";
    this.seatIds = problem.seat_ids || [];
  }
}

// The server's clock minus ours (ms), from the Date header of the last answer: countdowns run
// on the server's expiry time, so a browser with a wrong clock still counts right.
export let clockSkew = 0;

export async function call(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, { detail: `the gateway cannot be reached (${error.message})` });
  }
  // The header has whole seconds: the server's clock was half a second past it on average.
  const date = Date.parse(response.headers.get("date") ?? "") + 500;
  if (!Number.isNaN(date)) clockSkew = date - Date.now();
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text.slice(0, 200) };
  }
  if (!response.ok) throw new ApiError(response.status, data ?? {});
  return data;
}

// The buyer's anonymous session (POST /v1/sessions): the gateway sets it as an HttpOnly
// cookie that every call and the live stream carry, so the page never holds the token itself.
// A valid session is renewed (same buyer) before it runs out.
export async function startSession() {
  const session = await call("POST", "/v1/sessions");
  const left = Date.parse(session.expires_at) - (Date.now() + clockSkew);
  setTimeout(() => startSession().catch(() => {}), Math.max(60_000, left / 2));
  return session.holder_id;
}

export const eventPath = (eventId) => `/v1/events/${encodeURIComponent(eventId)}`;
