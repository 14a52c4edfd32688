// The waiting room on the page: when the event has one, the visitor joins it (as their session's
// buyer), sees "You are number N in line, about M minutes" from the place's live stream, and gets
// the seat map once admitted, with a countdown of the admission. The admission itself stays in
// the gateway, which passes it on with each hold.

import { ApiError, call, clockSkew, eventPath } from "./api.js";

const $ = (id) => document.getElementById(id);
const RETRY_MS = 2000;

function clock(ms) {
  const seconds = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

function render(ticket) {
  window.lmlQueue.seen.push(ticket.position);
  const minutes = Math.max(1, Math.ceil(ticket.estimated_wait_seconds / 60));
  $("queue-place").textContent = `You are number ${ticket.position} in line, `
    + `about ${minutes} minute${minutes === 1 ? "" : "s"}.`;
  const opens = Date.parse(ticket.opens_at);
  $("queue-opening").hidden = opens <= Date.now() + clockSkew;
  $("queue-opening").textContent = `The sale opens at ${new Date(opens).toLocaleTimeString()}: `
    + "everyone in line by then gets a place drawn at random, so there is no need to hurry.";
}

// Resolves with the admitted ticket. The stream ends after the admission; one cut short (the
// service restarting) is opened again after checking the place anew.
function untilAdmitted(eventId) {
  return new Promise((resolve) => {
    const open = () => {
      const source = new EventSource(`${eventPath(eventId)}/queue`);
      source.addEventListener("ticket", (message) => {
        const ticket = JSON.parse(message.data);
        if (!ticket.admitted) return render(ticket);
        source.close();
        resolve(ticket);
      });
      source.addEventListener("error", () => {
        source.close();
        setTimeout(async () => {
          const ticket = await call("POST", `${eventPath(eventId)}/queue`).catch(() => null);
          if (ticket?.admitted) resolve(ticket);
          else open();
        }, RETRY_MS);
      });
    };
    open();
  });
}

function countDown(ticket) {
  const lapses = Date.parse(ticket.admission_expires_at ?? "");
  const tick = () => {
    const left = lapses - (Date.now() + clockSkew);
    $("admission-left").textContent = clock(left);
    if (left > 0) return;
    clearInterval(timer);
    $("admission").textContent = "Your turn to hold seats has ended (seats already held stay "
      + "yours): reload the page to join the line again, at its end.";
  };
  $("admission").hidden = Number.isNaN(lapses);
  if (Number.isNaN(lapses)) return;
  const timer = setInterval(tick, 1000);
  tick();
}

// Whether the page may go on to the seat map: at once without a waiting room, once admitted
// with one; false (after saying why) when the visitor cannot get in.
export async function waitForAdmission(eventId, say) {
  window.lmlQueue = { seen: [], admitted: false };
  let ticket;
  for (;;) {
    try {
      ticket = await call("POST", `${eventPath(eventId)}/queue`);
      break;
    } catch (error) {
      if (error instanceof ApiError && error.reason === "QUEUE_NOT_FOUND") return true;
      if (!(error instanceof ApiError && error.status === 429)) {
        say(`You cannot join the line now: ${error.message}`);
        return false;
      }
      say("Many people are arriving from your network: trying again shortly.", "info");
      await new Promise((resolve) => { setTimeout(resolve, 5000); });
      say("");
    }
  }
  if (!ticket.admitted) {
    $("connection").textContent = "in line";
    document.querySelector("main").hidden = true;
    $("queue").hidden = false;
    render(ticket);
    ticket = await untilAdmitted(eventId);
    $("queue").hidden = true;
    document.querySelector("main").hidden = false;
  }
  window.lmlQueue.admitted = true;
  countDown(ticket);
  return true;
}
