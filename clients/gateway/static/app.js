// The seat-map page: loads the event's layout and taken seats, follows live changes, lets the
// visitor pick seats (or ask for the best ones) and hold them, then hands over to HoldPanel.

import { ApiError, call, eventPath, startSession } from "./api.js";
import { HoldPanel } from "./hold.js";
import { follow } from "./live.js";
import { waitForAdmission } from "./queue.js";
import { SeatMap } from "./seatmap.js";

const $ = (id) => document.getElementById(id);
const eventId = document.body.dataset.eventId;

function say(text, kind = "error") {
  $("message").textContent = text;
  $("message").dataset.kind = kind;
}

class Prices {
  constructor(map, prices, currency) {
    Object.assign(this, { map, prices, currency });
  }

  of(id) { return this.prices[this.map.seat(id)?.category] ?? 0; }

  // Amounts are in the currency's minor unit (pence, cents), as Stripe counts them.
  format(amount, currency = this.currency) {
    try {
      const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
      return format.format(amount / 10 ** format.resolvedOptions().maximumFractionDigits);
    } catch {
      return `${amount} ${currency}`;
    }
  }
}

function drawLegend(map, prices) {
  const counts = new Map();
  const category = $("best-category");
  $("legend").replaceChildren(...[...map.categories.values()].map((info) => {
    const item = document.createElement("li");
    const swatch = Object.assign(document.createElement("span"), { className: "swatch" });
    swatch.style.background = info.color;
    const price = info.id in prices.prices ? ` · ${prices.format(prices.prices[info.id])}` : "";
    const left = Object.assign(document.createElement("span"), { className: "left" });
    counts.set(info.id, left);
    item.append(swatch, `${info.label}${price}`, left);
    category.append(Object.assign(document.createElement("option"),
      { value: info.id, textContent: info.label }));
    return item;
  }));
  const update = () => {
    for (const [id, left] of counts) left.textContent = `${map.categories.get(id).available} left`;
  };
  map.on("flushed", update);
  update();
}

class Picker {
  constructor({ map, panel, prices }) {
    Object.assign(this, { map, panel, prices });
    this.selected = new Set();
    this.requesting = false;
    map.on("click", (id) => this.toggle(id));
    map.on("taken", (ids) => this.lost(ids.filter((id) => this.selected.has(id))));
    $("hold-selected").addEventListener("click", () => this.holdSelected());
    $("best-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.holdBest();
    });
  }

  toggle(id) {
    if (this.panel.active) return say("You have seats on hold: check out or release them first.");
    if (!this.selected.has(id) && this.map.status(id) !== "available") {
      return say(`${this.map.seat(id).label} is taken.`);
    }
    const on = !this.selected.has(id);
    if (on) this.selected.add(id);
    else this.selected.delete(id);
    this.map.mark([id], "selected", on);
    say("");
    this.render();
  }

  lost(ids) {
    // While our own hold request is out, its seats turning held on the stream are ours.
    if (!ids.length || this.requesting) return;
    this.clear(ids);
    say(`Just taken by someone else: ${ids.map((id) => this.map.seat(id).label).join(", ")}.`);
  }

  clear(ids = [...this.selected]) {
    this.map.mark(ids, "selected", false);
    for (const id of ids) this.selected.delete(id);
    this.render();
  }

  render() {
    const ids = [...this.selected];
    const total = ids.reduce((sum, id) => sum + this.prices.of(id), 0);
    $("selection").textContent = ids.length
      ? `${ids.length} selected (${this.prices.format(total)}): `
        + ids.map((id) => this.map.seat(id).label).join(", ")
      : "No seats selected.";
    $("hold-selected").disabled = ids.length === 0;
  }

  async request(body, unavailableHint = "") {
    this.requesting = true;
    try {
      const path = `${eventPath(eventId)}/holds`;
      return await call("POST", path, body);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      this.requesting = false;
      if (error.seatIds.length) this.lost(error.seatIds);
      else if (error.reason === "SEATS_UNAVAILABLE") say(error.message + unavailableHint);
      else say(error.message);
      return null;
    } finally {
      this.requesting = false;
    }
  }

  async holdSelected() {
    const hold = await this.request({ seat_ids: [...this.selected] });
    if (!hold) return;
    this.clear();
    this.panel.start(hold);
    say("Held: they are yours until the countdown ends.", "info");
  }

  async holdBest() {
    const best = {
      quantity: Number($("best-quantity").value), allow_split: $("best-split").checked,
    };
    if ($("best-category").value) best.category = $("best-category").value;
    const hint = best.allow_split ? "" : ": tick “allow split” to take the best seats apart";
    const hold = await this.request({ best_available: best }, hint);
    if (!hold) return;
    this.clear();
    this.panel.start(hold);
    say(hold.split ? "Held, but not all side by side: no block of that size was free."
      : "Held the best seats available.", "info");
  }
}

async function main() {
  $("event-name").textContent = eventId;
  let holderId;
  let seatmap;
  let layout;
  try {
    holderId = await startSession(); // the buyer: holds are theirs, the gateway knows them by it
  } catch (error) {
    $("connection").textContent = "unavailable";
    say(`No session with the gateway: ${error.message}`);
    return;
  }
  if (!(await waitForAdmission(eventId, say))) return; // the event's waiting room, if any
  try {
    seatmap = await call("GET", `${eventPath(eventId)}/seatmap?format=compact`);
    layout = await call("GET", seatmap.layout_url);
  } catch (error) {
    $("connection").textContent = "unavailable";
    say(`No seat map for event ${eventId}: ${error.message}`);
    return;
  }
  $("event-name").textContent = `${eventId} · ${layout.venue}`;
  const map = new SeatMap($("seatmap"), layout);
  const prices = new Prices(map, seatmap.prices, seatmap.currency);
  drawLegend(map, prices);
  const panel = new HoldPanel({ map, eventId, prices, say });
  const picker = new Picker({ map, panel, prices });
  const stats = { snapshots: 0, changes: 0, version: seatmap.version };
  window.lml = { map, panel, picker, holderId, stats };
  map.replaceStatuses(seatmap.statuses);
  map.flush();
  panel.restore();
  panel.check();
  follow(eventId, {
    snapshot({ taken, statuses, layoutHash }, version) {
      if (layoutHash !== undefined && layoutHash !== map.layoutHash) {
        reloadForLayout(layoutHash);
        return;
      }
      if (statuses !== undefined) map.replaceStatuses(statuses);
      else map.replaceAll(taken);
      map.flush(); // a whole-map replacement: draw it now so the hold check below sees it
      panel.check();
      Object.assign(stats, { version, snapshots: stats.snapshots + 1 });
    },
    change(change) {
      for (const id of change.seat_ids) map.set(id, change.status);
      panel.changed(change);
      Object.assign(stats, { version: change.version, changes: stats.changes + 1 });
    },
    connection(state) {
      $("connection").dataset.state = state;
      $("connection").textContent = state;
    },
  });
  addTooltip(map, prices);
}

// The event's layout is no longer the one drawn (a compact snapshot follows another seat index):
// the page starts over with the new layout, once per layout hash, so that a gateway that
// contradicts itself cannot make it reload for ever.
function reloadForLayout(layoutHash) {
  const key = `lml-layout-reload:${eventId}`;
  if (sessionStorage.getItem(key) === layoutHash) {
    say("The seat map changed and could not be reloaded: refresh the page.");
    return;
  }
  sessionStorage.setItem(key, layoutHash);
  window.location.reload();
}

const FLAG_NOTES = { w: "wheelchair space", c: "companion seat", r: "restricted view" };

function addTooltip(map, prices) {
  const tooltip = $("tooltip");
  const svg = $("seatmap");
  svg.addEventListener("mousemove", (event) => {
    const seat = map.seat(event.target.closest?.(".seat")?.dataset.id);
    tooltip.hidden = !seat;
    if (!seat) return;
    const area = svg.parentElement.getBoundingClientRect();
    const notes = [...seat.flags].map((flag) => FLAG_NOTES[flag]).filter(Boolean);
    tooltip.textContent = [seat.label, map.categories.get(seat.category)?.label ?? "",
      prices.format(prices.prices[seat.category] ?? 0), ...notes, seat.status].join(" · ");
    tooltip.style.left = `${event.clientX - area.left + 12}px`;
    tooltip.style.top = `${event.clientY - area.top + 12}px`;
  });
  svg.addEventListener("mouseleave", () => { tooltip.hidden = true; });
}

main();
