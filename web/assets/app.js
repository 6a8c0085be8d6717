// An app's page: its status, domains and Deploy button, and the Deployments tab — the list
// (status, kind, commit, duration, age; Roll back to this for a kept release that does not serve
// now) and, for the deployment chosen, its full build and deploy log, followed live while it
// runs (sse.js). The list is read again every 5 s and when a followed deployment ends.

import { api, allowed, session } from "./api.js";
import { follow } from "./sse.js";
import { h, enc, ageEl, refreshAges, badge, source, deploymentDuration, plain, announce, confirmIn, confirmDialog } from "./dom.js";

export function appPage(root, name, selected, failed) {
  const title = h("h1", {}, name);
  const state = h("span", { id: "app-status" });
  const links = h("ul", { class: "domains inline", "aria-label": "Domains" });
  const deployBtn = h("button", { type: "button", id: "deploy" }, "Deploy");
  const readOnly = h("p", { class: "note", id: "read-only", hidden: true });
  const message = h("p", { id: "app-message", role: "status" });
  const listStatus = h("p", { class: "muted" }, "Loading deployments…");
  const list = h("div", { id: "deployments" });
  const logPanel = h("section", { id: "log-panel", "aria-labelledby": "log-title", hidden: true });
  const dialog = confirmDialog();

  root.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Apps"), " / ", name),
    h("div", { class: "page-head" }, title, state, h("div", { class: "actions" }, deployBtn)),
    links,
    readOnly,
    message,
    h("nav", { class: "tabs", "aria-label": "App sections" }, h("a", { href: `#/apps/${enc(name)}`, "aria-current": "page" }, "Deployments")),
    h("section", { "aria-labelledby": "deployments-title", class: "tab" }, h("h2", { id: "deployments-title", class: "visually-hidden" }, "Deployments"), listStatus, list),
    logPanel,
    dialog,
  );

  let stopped = false;
  let lastList = "";
  let current = null; // the followed deployment: {id, abort}
  let rollbackTargets = new Set();
  let serving = new Set();

  function permissions() {
    const may = allowed("deploy", "deploying and rolling back");
    deployBtn.disabled = !may.ok;
    readOnly.hidden = may.ok;
    readOnly.textContent = may.ok ? "" : may.reason;
    if (!may.ok) deployBtn.setAttribute("aria-describedby", "read-only");
    for (const b of list.querySelectorAll("button.rollback")) {
      b.disabled = !may.ok;
      if (!may.ok) b.setAttribute("aria-describedby", "read-only");
    }
    document.getElementById("who-scope").textContent = session.scope ? `Token scope: ${session.scope}` : "Signed in";
  }

  function show(text, isError) {
    message.textContent = text;
    message.className = isError ? "error" : "ok";
  }

  async function act(what, fn) {
    try {
      return await fn();
    } catch (e) {
      if (failed(e)) return null;
      show(`${what} failed: ${e.message}`, true);
      permissions(); // a 403 taught the token's scope
      return null;
    }
  }

  deployBtn.addEventListener("click", async () => {
    deployBtn.disabled = true;
    const d = await act("Deploy", () => api("POST", `/apps/${enc(name)}/deployments`, {}));
    deployBtn.disabled = false;
    permissions();
    if (d) {
      show(`Deployment ${d.id} queued.`);
      location.hash = `#/apps/${enc(name)}/deployments/${enc(d.id)}`;
      loadList();
    }
  });

  const confirm = (titleText, text, yes) => confirmIn(dialog, titleText, text, yes);

  async function rollback(d) {
    const what = d.commit ? `commit ${source(d)}` : `deployment ${d.id}`;
    const yes = await confirm(
      `Roll ${name} back?`,
      `The release of deployment ${d.id} (${what}) serves ${name} again: its image runs, nothing is built.`,
      "Roll back",
    );
    if (!yes) return;
    const r = await act("Rollback", () => api("POST", `/apps/${enc(name)}/rollback`, { to: d.id }));
    if (r) {
      show(`Rollback ${r.id} queued.`);
      location.hash = `#/apps/${enc(name)}/deployments/${enc(r.id)}`;
      loadList();
    }
  }

  async function loadApp() {
    try {
      const app = await api("GET", `/apps/${enc(name)}`);
      state.replaceChildren(badge(app.status));
      links.replaceChildren(...(app.urls || []).map((u) => h("li", {}, h("a", { href: u, rel: "noopener noreferrer" }, u))));
    } catch (e) {
      if (!failed(e)) show(`Cannot read app ${name}: ${e.message}`, true);
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
        lastList = key;
        renderList(deployments);
        loadApp();
        const shown = current && deployments.find((d) => d.id === current.id);
        if (shown && current.describe) current.describe(shown);
      }
      refreshAges(list);
      listStatus.textContent = deployments.length ? "" : `No deployments of ${name} yet.`;
    } catch (e) {
      if (stopped || failed(e)) return;
      listStatus.textContent = `Cannot list the deployments: ${e.message}`;
    }
  }

  function renderList(deployments) {
    const head = ["Deployment", "Status", "Kind", "Commit", "Duration", "Queued", ""];
    const row = (d) => {
      const open = h("a", { href: `#/apps/${enc(name)}/deployments/${enc(d.id)}`, "aria-label": `Log of deployment ${d.id}` }, d.id.slice(0, 10));
      const rb = rollbackTargets.has(d.id) && d.status === "succeeded"
        ? h("button", { type: "button", class: "rollback quiet", "aria-label": `Roll back to deployment ${d.id}` }, "Roll back to this")
        : serving.has(d.id) && d.status === "succeeded"
          ? h("span", { class: "muted" }, "serving")
          : null;
      if (rb && rb.tagName === "BUTTON") rb.addEventListener("click", () => rollback(d));
      const cells = [
        open,
        badge(d.status),
        d.kind,
        h("span", {}, h("code", {}, source(d)), d.commit_message ? h("span", { class: "muted" }, ` ${d.commit_message.split("\n")[0]}`) : null),
        deploymentDuration(d),
        ageEl(d.created_at),
        rb,
      ];
      return h(
        "tr",
        { "data-id": d.id },
        cells.map((c, i) => h(i === 0 ? "th" : "td", { "data-label": head[i], scope: i === 0 ? "row" : null }, c)),
      );
    };
    list.replaceChildren(
      h(
        "table",
        { class: "list", id: "deployments-table" },
        h("caption", { class: "visually-hidden" }, `Deployments of ${name}, newest first`),
        h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t || h("span", { class: "visually-hidden" }, "Actions"))))),
        h("tbody", {}, deployments.map(row)),
      ),
    );
    permissions();
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
    if (current) current.abort.abort();
    current = null;
    if (!id) {
      logPanel.hidden = true;
      logPanel.replaceChildren();
      return;
    }
    const abort = new AbortController();
    current = { id, abort };
    const heading = h("h2", { id: "log-title" }, `Deployment ${id}`);
    const meta = h("p", { class: "muted", id: "log-meta" });
    const live = h("p", { id: "log-state", role: "status" }, "Connecting…");
    const lines = h("ol", { class: "log", id: "log", role: "log", tabindex: "0", "aria-label": `Build and deploy log of deployment ${id}` });
    logPanel.replaceChildren(heading, meta, live, lines);
    logPanel.hidden = false;
    markCurrent();
    heading.tabIndex = -1;
    heading.focus();

    current.describe = (d) => {
      meta.replaceChildren(
        ...[
          badge(d.status),
          ` ${d.kind}`,
          d.commit ? ` · commit ${source(d)}` : "",
          d.node ? ` · node ${d.node}` : "",
          ` · ${deploymentDuration(d)}`,
          d.error ? h("span", { class: "error block" }, d.error) : "",
        ],
      );
    };
    const describe = current.describe;
    api("GET", `/deployments/${enc(id)}`).then(describe, (e) => failed(e));

    const atBottom = () => lines.scrollHeight - lines.scrollTop - lines.clientHeight < 40;
    try {
      const end = await follow(`/api/v1/deployments/${enc(id)}/logs?follow=1`, {
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
      api("GET", `/deployments/${enc(id)}`).then(describe, (e) => failed(e));
      loadList();
      loadApp();
    } catch (e) {
      if (abort.signal.aborted || failed(e)) return;
      live.textContent = `Cannot follow the log: ${e.message}`;
      live.className = "error";
    }
  }

  permissions();
  loadApp();
  loadList();
  select(selected);
  const timer = setInterval(loadList, 5000);

  return {
    app: name,
    select,
    stop() {
      stopped = true;
      clearInterval(timer);
      if (current) current.abort.abort();
      if (dialog.open) dialog.close();
    },
  };
}
