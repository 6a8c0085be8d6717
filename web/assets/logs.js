// An app's Logs tab: the runtime log of every replica, live (GET /apps/NAME/logs?follow=1, the
// newest 200 lines first, resumed with Last-Event-ID after a dropped connection). Each line
// carries its replica's tag (container @ node); the log can be paused (lines that arrive
// meanwhile wait and are counted), filtered by text and narrowed to one replica. The page keeps
// the newest 2,000 lines.

import { apiUrl, session } from "./api.js";
import { follow } from "./sse.js";
import { h, enc, plain } from "./dom.js";

const KEEP = 2000;

export function logsTab(panel, ctx) {
  const { name } = ctx;
  const filter = h("input", { id: "logs-filter", type: "search", autocomplete: "off", spellcheck: "false", placeholder: "text in the line" });
  const replica = h("select", { id: "logs-replica" }, h("option", { value: "" }, "every replica"));
  const pause = h("button", { type: "button", id: "logs-pause", class: "quiet", "aria-pressed": "false" }, "Pause");
  const state = h("p", { id: "logs-state", role: "status" }, "Connecting…");
  const lines = h("ol", { class: "log", id: "app-log", role: "log", tabindex: "0", "aria-label": `Runtime log of ${name}` });
  const empty = h("p", { class: "muted", id: "logs-empty" }, "No line matches yet.");
  panel.replaceChildren(
    h("h2", { id: "logs-title" }, "Runtime log"),
    h(
      "div",
      { class: "toolbar" },
      h("label", { for: "logs-filter" }, "Filter"),
      filter,
      h("label", { for: "logs-replica" }, "Replica"),
      replica,
      pause,
    ),
    state,
    lines,
    empty,
  );

  const abort = new AbortController();
  const replicas = new Set();
  let paused = false;
  let waiting = []; // lines that came while paused
  let liveText = "Connecting…";

  const tagOf = (e) => `${e.container || "?"} @ ${e.node || "?"}`;

  function matches(li) {
    const q = filter.value.trim().toLowerCase();
    if (replica.value && li.dataset.replica !== replica.value) return false;
    return !q || li.dataset.text.includes(q);
  }

  function applyFilter() {
    let shown = 0;
    for (const li of lines.children) {
      li.hidden = !matches(li);
      if (!li.hidden) shown += 1;
    }
    empty.hidden = shown > 0;
  }

  function line(e) {
    const text = plain(e.line);
    const tag = tagOf(e);
    const li = h(
      "li",
      { class: e.stream === "stderr" ? "stderr" : null, "data-id": e.id, "data-replica": e.container || "" },
      h("span", { class: "tag" }, tag),
      " ",
      text,
    );
    li.dataset.text = `${tag} ${text}`.toLowerCase();
    if (e.container && !replicas.has(e.container)) {
      replicas.add(e.container);
      replica.append(h("option", { value: e.container }, tag));
    }
    return li;
  }

  function append(entries) {
    if (!entries.length) return;
    const stick = lines.scrollHeight - lines.scrollTop - lines.clientHeight < 40;
    for (const e of entries) {
      const li = line(e);
      li.hidden = !matches(li);
      lines.append(li);
    }
    while (lines.children.length > KEEP) lines.firstElementChild.remove();
    empty.hidden = [...lines.children].some((li) => !li.hidden);
    if (stick) lines.scrollTop = lines.scrollHeight;
  }

  function showState() {
    state.textContent = paused ? `Paused: ${waiting.length} new line${waiting.length === 1 ? "" : "s"} waiting.` : liveText;
  }

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (!paused) {
      append(waiting);
      waiting = [];
    }
    showState();
  });
  filter.addEventListener("input", applyFilter);
  filter.addEventListener("change", applyFilter);
  replica.addEventListener("change", applyFilter);

  (async () => {
    try {
      await follow(apiUrl(`/api/v1/apps/${enc(name)}/logs?follow=1&tail=200`), {
        token: session.token,
        signal: abort.signal,
        onState: (s) => {
          liveText = s === "live" ? "Following live…" : "Connection lost; resuming…";
          showState();
        },
        onEvent: (ev) => {
          if (ev.event === "message") {
            const e = JSON.parse(ev.data);
            if (paused) waiting.push(e);
            else append([e]);
            if (paused) showState();
          } else if (ev.event === "error") {
            liveText = `The log follow failed: ${JSON.parse(ev.data).error}; resuming…`;
            showState();
          }
        },
      });
    } catch (e) {
      if (abort.signal.aborted || ctx.failed(e)) return;
      state.textContent = `Cannot follow the log: ${e.message}`;
      state.className = "error";
    }
  })();

  return {
    stop() {
      abort.abort();
    },
  };
}
