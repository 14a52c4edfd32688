// The visitor's hold: countdown, more time, release, and checkout to a booking (Stripe through
// the gateway, or a plain confirm when the gateway has no checkout configured).

import { ApiError, call, clockSkew, eventPath } from "./api.js";

const $ = (id) => document.getElementById(id);
const SAVED = "lml-hold";
const POLL_MS = 1000;

function clock(ms) {
  const seconds = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

export class HoldPanel {
  constructor({ map, eventId, prices, say }) {
    Object.assign(this, { map, eventId, prices, say });
    this.hold = null;
    this.timer = 0;
    this.poller = 0;
    $("release").addEventListener("click", () => this.release());
    $("extend").addEventListener("click", () => this.extend());
    $("checkout").addEventListener("click", () => this.checkout());
    $("pay").addEventListener("click", () => this.pay());
    $("confirm-demo").addEventListener("click", () => this.confirmWithoutPayment());
    $("again").addEventListener("click", () => this.show("picking"));
  }

  get active() { return this.hold !== null; }

  path(suffix = "") {
    return `${eventPath(this.eventId)}/holds/${encodeURIComponent(this.hold.hold_id)}${suffix}`;
  }

  // Shows one of the panels: "picking", "hold" or "booking".
  show(panel) {
    for (const id of ["picking", "hold", "booking"]) $(id).hidden = id !== panel;
  }

  start(hold) {
    this.hold = { ...hold, expiresAt: Date.parse(hold.expires_at) };
    sessionStorage.setItem(SAVED, JSON.stringify(hold));
    this.map.mark(hold.seat_ids, "mine", true);
    $("hold-seats").replaceChildren(...hold.seat_ids.map((id) => {
      const seat = this.map.seat(id);
      return Object.assign(document.createElement("li"), { textContent: seat?.label ?? id });
    }));
    const total = hold.seat_ids.reduce((sum, id) => sum + this.prices.of(id), 0);
    $("hold-total").textContent = this.prices.format(total);
    for (const id of ["payment", "no-checkout"]) $(id).hidden = true;
    $("checkout").disabled = false;
    this.show("hold");
    this.tick();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), 250);
  }

  // A hold saved by this tab before a reload; dropped when it has run out.
  restore() {
    const saved = JSON.parse(sessionStorage.getItem(SAVED) ?? "null");
    if (saved && Date.parse(saved.expires_at) > Date.now() + clockSkew) this.start(saved);
    else sessionStorage.removeItem(SAVED);
  }

  tick() {
    const left = this.hold.expiresAt - (Date.now() + clockSkew);
    $("countdown").textContent = clock(left);
    if (left <= 0) this.end("Your hold expired: its seats are free again.");
  }

  end(message) {
    if (!this.hold) return;
    this.map.mark(this.hold.seat_ids, "mine", false);
    this.stop();
    this.show("picking");
    this.say(message);
  }

  stop() {
    clearInterval(this.timer);
    clearInterval(this.poller);
    this.poller = 0;
    this.hold = null;
    sessionStorage.removeItem(SAVED);
  }

  // Every change of our hold (the stream names a hold only to its buyer: `mine`): booked means
  // paid and confirmed; available means it ended.
  changed(change) {
    if (!this.hold || !change.mine || change.hold_id !== this.hold.hold_id) return;
    if (change.status === "booked") this.booked(this.paidNote());
    else if (change.status === "available") {
      this.end(change.reason === "expired" ? "Your hold expired: its seats are free again."
        : "Your hold was released.");
    }
  }

  // After a snapshot (first load or a stream that could not resume): is our hold still there?
  check() {
    if (!this.hold) return;
    const statuses = this.hold.seat_ids.map((id) => this.map.status(id));
    if (statuses.every((s) => s === "booked")) this.booked(this.paidNote());
    else if (!statuses.every((s) => s === "held")) this.end("Your hold has ended.");
  }

  paidNote(paymentRef = this.hold.payment_ref) {
    return paymentRef ? `Paid and confirmed (payment ${paymentRef}).` : "Confirmed.";
  }

  // Shows the booking once, whichever comes first: the live stream, the polled checkout
  // status or the confirm answer.
  booked(note) {
    if (!this.hold) return;
    const seats = this.hold.seat_ids;
    this.stop();
    $("booking-text").textContent = note;
    $("booking-seats").replaceChildren(...seats.map((id) => Object.assign(
      document.createElement("li"), { textContent: this.map.seat(id)?.label ?? id })));
    this.show("booking");
    this.say("Booked. Enjoy the show!", "info");
  }

  async act(work) {
    try {
      await work();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.reason === "HOLD_EXPIRED" || error.reason === "HOLD_NOT_FOUND") {
        this.end(`Your hold has ended (${error.message}).`);
      } else {
        this.say(error.message);
      }
    }
  }

  release() {
    return this.act(async () => {
      await call("POST", this.path("/release"));
      this.end("Released.");
    });
  }

  extend() {
    return this.act(async () => {
      const hold = await call("POST", this.path("/extend"));
      this.hold.expiresAt = Date.parse(hold.expires_at);
      sessionStorage.setItem(SAVED, JSON.stringify({ ...this.hold, expires_at: hold.expires_at }));
      this.tick();
      this.say("Your hold has more time.", "info");
    });
  }

  checkout() {
    return this.act(async () => {
      try {
        const intent = await call("POST", this.path("/checkout"));
        this.hold.payment_ref = intent.payment_intent_id;
        this.hold.expiresAt = Date.parse(intent.expires_at); // checkout extends the hold
        this.tick();
        $("payment-text").textContent =
          `To pay: ${this.prices.format(intent.amount, intent.currency.toUpperCase())}.`;
        $("payment").hidden = false;
        $("checkout").disabled = true;
      } catch (error) {
        // 503: checkout not configured; a 404 with no reason: a gateway without the route.
        const missing = error instanceof ApiError && error.status === 404 && !error.reason;
        if (!(error instanceof ApiError) || !(error.status === 503 || missing)) throw error;
        // The gateway books unpaid holds only when started with --allow-unpaid-confirm.
        const unpaid = document.body.dataset.unpaidConfirm === "true";
        $("no-checkout-text").textContent = `Payment is not set up on this gateway: ${error.message}`
          + (unpaid ? "" : " Booking is not possible here.");
        $("confirm-demo").hidden = !unpaid;
        $("no-checkout").hidden = false;
        $("checkout").disabled = true;
      }
    });
  }

  // The gateway pays with Stripe's test card; Stripe's webhook then confirms the hold, which
  // shows here as our seats turning booked on the live stream (or in the polled status).
  pay() {
    return this.act(async () => {
      $("pay").disabled = true;
      try {
        await call("POST", this.path("/checkout/test-payment"));
      } finally {
        $("pay").disabled = false;
      }
      if (!this.hold) return; // the booking came on the live stream first
      this.say("Payment sent, waiting for its confirmation…", "info");
      clearInterval(this.poller);
      this.poller = setInterval(() => this.act(() => this.poll()), POLL_MS);
    });
  }

  // The checkout's status: awaiting_payment, booked, refunded (paid after the hold ended and
  // its seats were gone) or released (payment failed or cancelled).
  async poll() {
    if (!this.hold) return;
    const state = await call("GET", this.path("/checkout"));
    if (!this.hold || state.status === "awaiting_payment") return;
    if (state.status === "booked") return this.booked(this.paidNote(state.payment_intent_id));
    clearInterval(this.poller);
    this.end(`The payment did not end in a booking: ${state.status}`
      + (state.reason ? ` (${state.reason}).` : "."));
  }

  confirmWithoutPayment() {
    return this.act(async () => {
      await call("POST", this.path("/confirm"), { payment_ref: "demo-no-payment" });
      this.booked("Confirmed without payment (demo).");
    });
  }
}
