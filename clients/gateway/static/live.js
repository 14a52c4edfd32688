// Live seat statuses over Server-Sent Events. EventSource reconnects by itself after a dropped
// stream and sends the last event id (the change-log version) back, so the gateway resumes
// where it stopped, or sends a fresh snapshot when it cannot. An error answer (a 503 while the
// inventory service restarts) ends an EventSource for good: then a new one is opened, with
// backoff, and its first snapshot replaces everything. A snapshot comes in the compact form
// (one status letter per seat of the layout, with the layout's hash) when the event has a
// layout, else with every seat by id.

import { eventPath } from "./api.js";

const STATUS = { AVAILABLE: "available", HELD: "held", BOOKED: "booked" };
const RETRY_MS = [1000, 2000, 5000, 10000, 30000];

export function follow(eventId, { snapshot, change, connection }) {
  let failures = 0;
  const open = () => {
    const source = new EventSource(`${eventPath(eventId)}/changes`);
    source.addEventListener("snapshot", (message) => {
      const data = JSON.parse(message.data);
      if (data.statuses !== undefined) {
        snapshot({ layoutHash: data.layout_hash, statuses: data.statuses }, data.version);
        return;
      }
      const taken = new Map();
      for (const [id, status] of Object.entries(data.seats)) {
        if (status !== "AVAILABLE") taken.set(id, STATUS[status]);
      }
      snapshot({ taken }, data.version);
    });
    source.addEventListener("change", (message) => {
      const data = JSON.parse(message.data);
      change({ ...data, status: STATUS[data.status] });
    });
    source.addEventListener("open", () => {
      failures = 0;
      connection("live");
    });
    source.addEventListener("error", () => {
      connection("reconnecting");
      if (source.readyState !== EventSource.CLOSED) return; // it retries by itself
      setTimeout(open, RETRY_MS[Math.min(failures, RETRY_MS.length - 1)]);
      failures += 1;
    });
  };
  open();
}
