// Polling with backoff: the interval the operator chose (kept in localStorage), longer while
// the tab is hidden, doubling after each failed call; immediate again when the tab comes back.

import { POLL, nextDelay } from "./format.js";

const POLL_ITEM = "ld3.pollMs";

export function pollMs() {
  const raw = localStorage.getItem(POLL_ITEM);
  const v = Number(raw);
  return raw !== null && Number.isFinite(v) && (v === 0 || v >= POLL.minMs) ? v : POLL.defaultMs;
}

export function setPollMs(ms) {
  localStorage.setItem(POLL_ITEM, String(ms));
}

export class Poller {
  /** ``fn`` is awaited each tick; ``onStatus({ok, error, nextMs})`` tells the header. */
  constructor(fn, onStatus = () => {}) {
    this.fn = fn;
    this.onStatus = onStatus;
    this.failures = 0;
    this.timer = null;
    this.stopped = false;
    this.running = false;
    this.finished = false;
    this.onVisible = () => { if (!document.hidden && !this.finished) this.now(); };
    document.addEventListener("visibilitychange", this.onVisible);
  }

  start() { this.now(); return this; }

  /** Poll at once (after an action, or when the interval changes). */
  now() {
    if (this.stopped) return;
    this.finished = false;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.running) { this.again = true; return; }
    this.tick();
  }

  async tick() {
    this.running = true;
    let error = null;
    try {
      await this.fn();
      this.failures = 0;
    } catch (e) {
      this.failures += 1;
      error = e;
    }
    this.running = false;
    if (this.stopped) return;
    if (this.again && !this.finished) { this.again = false; this.tick(); return; }
    const nextMs = this.finished ? 0 : nextDelay(pollMs(), { hidden: document.hidden, failures: this.failures });
    this.onStatus({ ok: error === null, error, nextMs });
    if (nextMs > 0) this.timer = setTimeout(() => this.tick(), nextMs);
  }

  /** No more polls after this one (what is shown can no longer change). */
  finish() {
    this.finished = true;
    clearTimeout(this.timer);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    document.removeEventListener("visibilitychange", this.onVisible);
  }
}
