// The SVG seat map: one element per seat, made once; status changes are queued and written in
// one batch per animation frame, so hundreds of changes a second cost one style pass a frame.

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#b71c1c", "#1565c0", "#2e7d32", "#f9a825", "#6a1b9a", "#00838f", "#ef6c00"];

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

// Half the smallest gap between neighbours in a row, so no two seats ever overlap.
function seatRadius(layout, width, height) {
  let gap = Infinity;
  for (const section of layout.sections) {
    for (const row of section.rows) {
      for (let i = 1; i < row.seats.length; i++) {
        const [a, b] = [row.seats[i - 1], row.seats[i]];
        gap = Math.min(gap, Math.hypot((a[3] - b[3]) * width, (a[4] - b[4]) * height));
      }
    }
  }
  return Number.isFinite(gap) ? Math.max(1, gap * 0.42) : Math.min(width, height) / 60;
}

const LETTERS = { A: "available", H: "held", B: "booked" };

const FLAG_CLASSES = { w: "wheelchair", c: "companion", r: "restricted" };

// A circle per seat; a wheelchair space is a square, so it shows without colour vision.
function seatElement(cx, cy, radius, flags) {
  const classes = ["seat", ...[...flags].map((flag) => FLAG_CLASSES[flag]).filter(Boolean)];
  const common = { class: classes.join(" "), "data-status": "available" };
  if (!flags.includes("w")) {
    const r = radius.toFixed(2);
    return svgElement("circle", { ...common, cx: cx.toFixed(2), cy: cy.toFixed(2), r });
  }
  return svgElement("rect", { ...common, x: (cx - radius).toFixed(2), y: (cy - radius).toFixed(2),
    width: (2 * radius).toFixed(2), height: (2 * radius).toFixed(2) });
}

export class SeatMap {
  constructor(svg, layout) {
    this.svg = svg;
    this.seats = new Map(); // seat id -> {element, status, category, label, section, row, flags}
    this.layoutHash = layout.hash;
    this.index = []; // seat ids by seat index: their order in the layout export
    this.categories = new Map(layout.categories.map((c, i) => [c.id, {
      ...c, color: c.color || PALETTE[i % PALETTE.length], available: 0,
    }]));
    this.pending = new Map(); // seat id -> status; only the latest per seat is kept
    this.frame = 0;
    this.listeners = { click: [], taken: [], flushed: [] };
    this.stats = { flushes: 0, applied: 0, flushMsMax: 0, flushMsTotal: 0 };
    this.draw(layout);
  }

  on(name, listener) { this.listeners[name].push(listener); }

  draw(layout) {
    const { width, height } = layout.viewport;
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const radius = seatRadius(layout, width, height);
    const focal = layout.ranking ?? { focal_x: 0.5, focal_y: 0 };
    this.svg.append(
      svgElement("rect", { class: "stage", x: width * (focal.focal_x - 0.15), y: 0,
        width: width * 0.3, height: Math.max(height * focal.focal_y, 24), rx: 6 }),
      Object.assign(svgElement("text", { class: "stage-label", x: width * focal.focal_x,
        y: Math.max(height * focal.focal_y, 24) * 0.7 }), { textContent: "STAGE" }));
    const fragment = document.createDocumentFragment();
    for (const section of layout.sections) {
      const group = svgElement("g", { "data-section": section.id });
      let [sumX, minY] = [0, Infinity];
      let count = 0;
      for (const row of section.rows) {
        for (const [id, number, label, x, y, category, rank, flags] of row.seats) {
          const info = this.categories.get(category);
          const element = seatElement(x * width, y * height, radius, flags);
          element.setAttribute("fill", info ? info.color : "#999");
          element.setAttribute("data-id", id);
          group.append(element);
          this.seats.set(id, { element, status: "available", category, rank, flags,
            label: label || `${section.label} ${row.label}${number}`, section: section.id });
          this.index.push(id);
          if (info) info.available += 1;
          sumX += x;
          minY = Math.min(minY, y);
          count += 1;
        }
      }
      if (count) {
        group.append(Object.assign(svgElement("text", { class: "section-label",
          x: (sumX / count * width).toFixed(1), y: (minY * height - 6).toFixed(1) }),
          { textContent: section.label }));
      }
      fragment.append(group);
    }
    this.svg.append(fragment);
    this.svg.addEventListener("click", (event) => {
      const id = event.target.closest?.(".seat")?.dataset.id;
      if (id) for (const listener of this.listeners.click) listener(id);
    });
  }

  seat(id) { return this.seats.get(id); }

  status(id) { return this.seats.get(id)?.status; }

  // Queues one seat's new status ("available", "held" or "booked"); drawn on the next frame.
  set(id, status) {
    if (!this.seats.has(id)) return;
    this.pending.set(id, status);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  // A snapshot: `taken` maps seat ids to "held" or "booked"; every other seat is available.
  replaceAll(taken) {
    for (const id of this.seats.keys()) this.set(id, taken.get(id) ?? "available");
  }

  // A compact snapshot: one letter per seat in seat index order (A, H or B).
  replaceStatuses(statuses) {
    if (statuses.length !== this.index.length) {
      throw new Error(`${statuses.length} statuses for a layout of ${this.index.length} seats`);
    }
    for (let i = 0; i < statuses.length; i++) this.set(this.index[i], LETTERS[statuses[i]]);
  }

  flush() {
    const started = performance.now();
    if (this.frame) cancelAnimationFrame(this.frame); // when called directly, not by the frame
    this.frame = 0;
    const taken = [];
    for (const [id, status] of this.pending) {
      const seat = this.seats.get(id);
      if (seat.status === status) continue;
      const info = this.categories.get(seat.category);
      if (info) info.available += (status === "available") - (seat.status === "available");
      if (seat.status === "available") taken.push(id);
      seat.status = status;
      seat.element.setAttribute("data-status", status);
      this.stats.applied += 1;
    }
    this.pending.clear();
    const spent = performance.now() - started;
    this.stats.flushes += 1;
    this.stats.flushMsTotal += spent;
    this.stats.flushMsMax = Math.max(this.stats.flushMsMax, spent);
    if (taken.length) for (const listener of this.listeners.taken) listener(taken);
    for (const listener of this.listeners.flushed) listener();
  }

  mark(ids, className, on) {
    for (const id of ids) this.seats.get(id)?.element.classList.toggle(className, on);
  }
}
