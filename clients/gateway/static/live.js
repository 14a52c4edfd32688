// Live seat statuses over Server-Sent Events. EventSource reconnects by itself and sends the
// last event id (the change-log version) back, so the gateway resumes where it stopped, or
// sends a fresh snapshot when it cannot.

import { eventPath } from "./api.js";

const STATUS = { AVAILABLE: "available", HELD: "held", BOOKED: "booked" };

export function follow(eventId, { snapshot, change, connection }) {
  const source = new EventSource(`${eventPath(eventId)}/changes`);
  source.addEventListener("snapshot", (message) => {
    const data = JSON.parse(message.data);
    const taken = new Map();
    for (const [id, status] of Object.entries(data.seats)) {
      if (status !== "AVAILABLE") taken.set(id, STATUS[status]);
    }
    snapshot(taken, data.version);
  });
  source.addEventListener("change", (message) => {
    const data = JSON.parse(message.data);
    change({ ...data, status: STATUS[data.status] });
  });
  source.addEventListener("open", () => connection("live"));
  source.addEventListener("error", () => {
    connection(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
  });
  return source;
}
