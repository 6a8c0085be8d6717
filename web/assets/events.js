// What changes, live: one follow of GET /api/v1/events (sse.js, resumed after a dropped
// connection) shared by whatever listens. `listen(fn)` calls `fn(event)` for each event —
// {event: "deployment", data: {id, app, status, kind}}, {event: "apps", data: {version}} or
// {event: "resync"} (changes were missed: read again; also after a reconnection, since nothing
// is replayed) — and returns the function that stops listening; the follow stops with the last
// listener. A page reads what it shows once, then again when an event concerns it.

import { apiUrl, session } from "./api.js";
import { follow } from "./sse.js";

const listeners = new Set();
let abort = null;

function tell(ev) {
  for (const fn of [...listeners]) {
    try {
      fn(ev);
    } catch {
      // one listener's failure is not the others'
    }
  }
}

function start() {
  abort = new AbortController();
  const signal = abort.signal;
  let connected = false;
  follow(apiUrl("/api/v1/events?follow=1"), {
    token: session.token,
    signal,
    onState: (s) => {
      // Back after a drop: what happened meanwhile was not seen.
      if (s === "live" && connected) tell({ event: "resync", data: {} });
      if (s === "live") connected = true;
    },
    onEvent: (ev) => {
      let data = {};
      try {
        data = JSON.parse(ev.data);
      } catch {
        // not JSON: told without data
      }
      tell({ event: ev.event, data });
    },
  }).catch(() => {
    // a refused token or a server without events: the pages' slow reads go on
  });
}

export function listen(fn) {
  listeners.add(fn);
  if (!abort) start();
  return () => {
    listeners.delete(fn);
    if (!listeners.size && abort) {
      abort.abort();
      abort = null;
    }
  };
}

// Calls `fn` at most once per `ms` (the last call within the wait runs at its end): a burst of
// events reads a list once.
export function debounce(fn, ms = 300) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
}
