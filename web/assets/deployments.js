// An app's Deployments tab: the list (status, kind, commit and author, duration, age; Roll back
// to this for a kept release that does not serve now, Cancel for one still running) and, for
// the deployment chosen, its full build and deploy log, followed live while it runs (sse.js)
// with its own Cancel. The list is read again when the API's events tell of a deployment of the
// app (events.js), when a followed deployment ends, and every 30 s besides.

import { api, apiUrl, session } from "./api.js";
import { follow } from "./sse.js";
import { h, enc, ageEl, refreshAges, badge, source, deploymentDuration, plain, announce, table } from "./dom.js";
import { listen, debounce } from "./events.js";

const running = (d) => !["succeeded", "failed", "cancelled"].includes(d.status);

export function deploymentsTab(panel, ctx) {
  const { name } = ctx;
  const listStatus = h("p", { class: "muted" }, "Loading deployments…");
  const list = h("div", { id: "deployments" });
  const logPanel = h("section", { id: "log-panel", "aria-labelledby": "log-title", hidden: true });
  panel.replaceChildren(h("h2", { id: "deployments-title", class: "visually-hidden" }, "Deployments"), listStatus, list, logPanel);

  let stopped = false;
  let lastList = "";
  let current = null; // the followed deployment: {id, abort, describe}
  let rollbackTargets = new Set();
  let serving = new Set();

  function guardButtons() {
    for (const b of panel.querySelectorAll("button.rollback, button.cancel")) ctx.guard(b);
  }

  async function rollback(d) {
    const what = d.commit ? `commit ${source(d)}` : `deployment ${d.id}`;
    const yes = await ctx.confirm(
      `Roll ${name} back?`,
      `The release of deployment ${d.id} (${what}) serves ${name} again: its image runs, nothing is built.`,
      "Roll back",
    );
    if (!yes) return;
    const r = await ctx.act("Rollback", () => api("POST", `/apps/${enc(name)}/rollback`, { to: d.id }));
    if (r) {
      ctx.show(`Rollback ${r.id} queued.`);
      location.hash = `#/apps/${enc(name)}/deployments/${enc(r.id)}`;
      loadList();
    }
  }

  async function cancel(d) {
    const yes = await ctx.confirm(
      `Cancel deployment ${d.id}?`,
      `It stops where it is (${d.status.replace(/_/g, " ")}) and ends cancelled; what serves ${name} now keeps serving.`,
      "Cancel deployment",
    );
    if (!yes) return;
    const r = await ctx.act("Cancel", () => api("POST", `/deployments/${enc(d.id)}/cancel`));
    if (r) {
      ctx.show(`Deployment ${d.id} is being cancelled.`);
      loadList();
    }
  }

  async function loadList() {
    try {
      const [deployments, releases] = await Promise.all([
        api("GET", `/apps/${enc(name)}/deployments`),
        api("GET", `/apps/${enc(name)}/releases`).catch(() => []),
      ]);
      if (stopped) return;
      rollbackTargets = new Set(releases.filter((r) => !r.current).flatMap((r) => r.deployments || []));
      serving = new Set(releases.filter((r) => r.current).flatMap((r) => r.deployments || []));
      const key = JSON.stringify([deployments, [...rollbackTargets]]);
      if (key !== lastList) {
        if (lastList) ctx.reloadApp();
        lastList = key;
        renderList(deployments);
        const shown = current && deployments.find((d) => d.id === current.id);
        if (shown && current.describe) current.describe(shown);
      }
      refreshAges(list);
      listStatus.textContent = deployments.length ? "" : `No deployments of ${name} yet.`;
    } catch (e) {
      if (stopped || ctx.failed(e)) return;
      listStatus.textContent = `Cannot list the deployments: ${e.message}`;
    }
  }

  function action(d) {
    if (running(d)) {
      const b = h("button", { type: "button", class: "cancel quiet", "aria-label": `Cancel deployment ${d.id}` }, "Cancel");
      b.addEventListener("click", () => cancel(d));
      return b;
    }
    if (rollbackTargets.has(d.id) && d.status === "succeeded") {
      const b = h("button", { type: "button", class: "rollback quiet", "aria-label": `Roll back to deployment ${d.id}` }, "Roll back to this");
      b.addEventListener("click", () => rollback(d));
      return b;
    }
    if (serving.has(d.id) && d.status === "succeeded") return h("span", { class: "muted" }, "serving");
    return null;
  }

  function renderList(deployments) {
    list.replaceChildren(
      table({
        id: "deployments-table",
        caption: `Deployments of ${name}, newest first`,
        head: ["Deployment", "Status", "Kind", "Commit", "Duration", "Queued", ""],
        rows: deployments,
        attrs: (d) => ({ "data-id": d.id }),
        cells: (d) => [
          h("a", { href: `#/apps/${enc(name)}/deployments/${enc(d.id)}`, "aria-label": `Log of deployment ${d.id}` }, d.id.slice(0, 10)),
          badge(d.status),
          d.kind,
          h(
            "span",
            {},
            h("code", {}, source(d)),
            d.commit_message ? h("span", { class: "muted" }, ` ${d.commit_message.split("\n")[0]}`) : null,
            d.commit_author ? h("span", { class: "muted block" }, `by ${d.commit_author}`) : null,
          ),
          deploymentDuration(d),
          ageEl(d.created_at),
          action(d),
        ],
      }),
    );
    guardButtons();
    markCurrent();
  }

  function markCurrent() {
    for (const tr of list.querySelectorAll("tr[data-id]")) {
      if (current && tr.dataset.id === current.id) tr.setAttribute("aria-current", "true");
      else tr.removeAttribute("aria-current");
    }
  }

  // Shows deployment `id`'s log, following it live until it ends.
  async function select(id) {
    if (current && current.id === id) return;
    if (current) current.abort.abort();
    current = null;
    if (!id) {
      logPanel.hidden = true;
      logPanel.replaceChildren();
      markCurrent();
      return;
    }
    const abort = new AbortController();
    current = { id, abort };
    const heading = h("h2", { id: "log-title" }, `Deployment ${id}`);
    const meta = h("p", { class: "muted", id: "log-meta" });
    const cancelBtn = h("button", { type: "button", class: "cancel quiet", id: "log-cancel", hidden: true }, "Cancel this deployment");
    const live = h("p", { id: "log-state", role: "status" }, "Connecting…");
    const lines = h("ol", { class: "log", id: "log", role: "log", tabindex: "0", "aria-label": `Build and deploy log of deployment ${id}` });
    logPanel.replaceChildren(h("div", { class: "page-head" }, heading, h("div", { class: "actions" }, cancelBtn)), meta, live, lines);
    logPanel.hidden = false;
    markCurrent();
    heading.tabIndex = -1;
    heading.focus();

    let record = null;
    cancelBtn.addEventListener("click", () => record && cancel(record));
    current.describe = (d) => {
      record = d;
      cancelBtn.hidden = !running(d);
      ctx.guard(cancelBtn);
      meta.replaceChildren(
        ...[
          badge(d.status),
          ` ${d.kind}`,
          d.commit ? ` · commit ${source(d)}` : "",
          d.commit_author ? ` by ${d.commit_author}` : "",
          d.node ? ` · node ${d.node}` : "",
          ` · ${deploymentDuration(d)}`,
          d.error ? h("span", { class: "error block" }, d.error) : "",
        ],
      );
    };
    const describe = current.describe;
    api("GET", `/deployments/${enc(id)}`).then(describe, (e) => ctx.failed(e));

    const atBottom = () => lines.scrollHeight - lines.scrollTop - lines.clientHeight < 40;
    try {
      const end = await follow(apiUrl(`/api/v1/deployments/${enc(id)}/logs?follow=1`), {
        token: session.token,
        signal: abort.signal,
        onState: (s) => {
          live.textContent = s === "live" ? "Following live…" : "Connection lost; resuming…";
        },
        onEvent: (ev) => {
          if (ev.event === "message") {
            const e = JSON.parse(ev.data);
            const stick = atBottom();
            lines.append(h("li", { class: e.stream === "stderr" ? "stderr" : null, "data-id": e.id }, plain(e.line)));
            if (stick) lines.scrollTop = lines.scrollHeight;
          } else if (ev.event === "error") {
            live.textContent = `The log follow failed: ${JSON.parse(ev.data).error}; resuming…`;
          }
        },
      });
      if (!end || abort.signal.aborted) return;
      const outcome = JSON.parse(end.data);
      live.textContent = `Ended: ${outcome.status}${outcome.error ? ` — ${outcome.error}` : ""}`;
      live.className = outcome.status === "succeeded" ? "ok" : "error";
      announce(`Deployment ${id} ${outcome.status}`);
      api("GET", `/deployments/${enc(id)}`).then(describe, (e) => ctx.failed(e));
      loadList();
      ctx.reloadApp();
    } catch (e) {
      if (abort.signal.aborted || ctx.failed(e)) return;
      live.textContent = `Cannot follow the log: ${e.message}`;
      live.className = "error";
    }
  }

  loadList();
  const reload = debounce(loadList);
  const off = listen((ev) => {
    if (ev.event !== "deployment" || ev.data.app === name) reload();
  });
  const timer = setInterval(loadList, 30000);
  // The ages and the running deployments' durations move on without a read.
  const ages = setInterval(() => refreshAges(list), 5000);

  return {
    select,
    stop() {
      stopped = true;
      off();
      clearInterval(timer);
      clearInterval(ages);
      if (current) current.abort.abort();
    },
  };
}
