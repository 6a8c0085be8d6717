// The Audit page (#/audit, admin): the audit log, newest first (GET /audit?limit=N — the API's
// one parameter; the page offers 50 to 1000 entries), narrowed in the page to one action or a
// text in the token, target or path. Every change made through the API is there, with its
// outcome. Read again every 5 s. Any other token sees why instead.

import { api, allowed } from "./api.js";
import { h, ageEl, refreshAges, table } from "./dom.js";

export function auditPage(root, failed) {
  const may = allowed("admin", "reading the audit log");
  if (!may.ok) {
    root.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Audit log")), h("p", { class: "note", id: "audit-reason" }, may.reason));
    return { stop() {} };
  }

  const limit = h(
    "select",
    { id: "audit-limit" },
    [50, 100, 500, 1000].map((n) => h("option", { value: String(n), selected: n === 100 }, `${n} newest`)),
  );
  const action = h("select", { id: "audit-action" }, h("option", { value: "" }, "Every action"));
  const search = h("input", { type: "search", id: "audit-search", autocomplete: "off", spellcheck: "false", placeholder: "token, target or path" });
  const status = h("p", { class: "muted", id: "audit-status" }, "Loading the audit log…");
  const body = h("div", { id: "audit" });
  root.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Audit log")),
    h(
      "div",
      { class: "filters", role: "search", "aria-label": "Audit log" },
      h("span", { class: "field" }, h("label", { for: "audit-limit" }, "Show"), limit),
      h("span", { class: "field" }, h("label", { for: "audit-action" }, "Action"), action),
      h("span", { class: "field" }, h("label", { for: "audit-search" }, "Containing"), search),
    ),
    status,
    body,
  );
  let stopped = false;
  let entries = [];
  let last = "";

  function actions() {
    const have = [...new Set(entries.map((e) => e.action))].sort();
    const now = [...action.options].slice(1).map((o) => o.value);
    if (JSON.stringify(have) === JSON.stringify(now)) return;
    const chosen = action.value;
    action.replaceChildren(h("option", { value: "" }, "Every action"), ...have.map((a) => h("option", { value: a, selected: a === chosen }, a)));
  }

  function render() {
    const want = action.value;
    const text = search.value.trim().toLowerCase();
    const shown = entries.filter(
      (e) => (!want || e.action === want) && (!text || [e.token_name, e.token_id, e.target, e.path].some((v) => String(v).toLowerCase().includes(text))),
    );
    const key = JSON.stringify(shown.map((e) => e.id));
    status.className = "muted";
    status.textContent =
      `${shown.length} of the ${entries.length} newest entr${entries.length === 1 ? "y" : "ies"}` +
      (entries.length >= Number(limit.value) ? ` (older ones: show more)` : "") +
      " · updated every 5 s";
    if (key === last) {
      refreshAges(body);
      return;
    }
    last = key;
    if (!shown.length) {
      body.replaceChildren(h("p", { class: "card" }, entries.length ? "No entry matches." : "Nothing has been changed through the API yet."));
      return;
    }
    body.replaceChildren(
      table({
        id: "audit-table",
        caption: "Audit log, newest first",
        head: ["When", "Action", "Target", "Token", "Request", "Status"],
        rows: shown,
        attrs: (e) => ({ "data-action": e.action, "data-target": e.target }),
        cells: (e) => [
          ageEl(e.at),
          h("code", {}, e.action),
          e.target || h("span", { class: "muted" }, "—"),
          h("span", {}, e.token_name, " ", h("span", { class: "muted" }, `(${e.token_id})`)),
          h("code", {}, `${e.method} ${e.path}`),
          h("span", { class: e.status < 400 ? "ok" : "error" }, String(e.status)),
        ],
      }),
    );
  }

  async function load() {
    try {
      const got = await api("GET", `/audit?limit=${Number(limit.value)}`);
      if (stopped) return;
      entries = got;
      actions();
      render();
    } catch (e) {
      if (stopped || failed(e)) return;
      status.textContent = `Cannot read the audit log: ${e.message}`;
      status.className = "error";
    }
  }

  limit.addEventListener("change", load);
  action.addEventListener("change", render);
  search.addEventListener("input", render);
  load();
  const timer = setInterval(load, 5000);
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
