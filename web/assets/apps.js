// The Apps page: every app with its status, the release serving it (commit and message), its
// domains as links, healthy replicas of the desired count, and its last deployment and age.
// Read again (GET /apps, and each app's /releases and /replicas) when the API's events tell of a
// change, and every 30 s besides (replicas' health follows the nodes); "New app" opens
// the form (#/new); a token below admin finds it disabled, with the reason.

import { api, allowed } from "./api.js";
import { h, enc, ageEl, refreshAges, badge, shortSha, table } from "./dom.js";
import { listen, debounce } from "./events.js";

export function appsPage(root, failed) {
  const status = h("p", { class: "muted", id: "apps-status" }, "Loading apps…");
  const body = h("div", { id: "apps" });
  const newApp = h("button", { type: "button", id: "new-app", onclick: () => (location.hash = "#/new") }, "New app");
  const readOnly = h("p", { class: "note", id: "apps-read-only", hidden: true });
  root.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Apps"), h("div", { class: "actions" }, newApp)),
    readOnly,
    status,
    body,
  );

  function permissions() {
    const may = allowed("admin", "creating an app");
    newApp.disabled = !may.ok;
    readOnly.hidden = may.ok;
    readOnly.textContent = may.ok ? "" : may.reason;
    if (may.ok) newApp.removeAttribute("aria-describedby");
    else newApp.setAttribute("aria-describedby", "apps-read-only");
  }
  permissions();
  let last = "";
  let stopped = false;

  async function load() {
    try {
      const apps = await api("GET", "/apps");
      const rows = await Promise.all(
        apps.map(async (a) => {
          const [releases, replicas] = await Promise.all([
            api("GET", `/apps/${enc(a.name)}/releases`).catch(() => []),
            api("GET", `/apps/${enc(a.name)}/replicas`).catch(() => []),
          ]);
          return { app: a, release: releases.find((r) => r.current) || null, replicas };
        }),
      );
      if (stopped) return;
      const key = JSON.stringify(rows);
      if (key !== last) {
        last = key;
        render(rows);
      }
      refreshAges(body);
      status.textContent = `${rows.length} app${rows.length === 1 ? "" : "s"} · updated every 5 s`;
    } catch (e) {
      if (stopped || failed(e)) return;
      status.textContent = `Cannot list the apps: ${e.message}`;
      status.className = "error";
    }
  }

  function render(rows) {
    if (!rows.length) {
      body.replaceChildren(
        h(
          "p",
          { class: "card" },
          "No apps yet. Create one with New app above, or with ",
          h("code", {}, "berth apps create NAME --repo URL --port PORT"),
          ", then deploy it with ",
          h("code", {}, "berth deploy NAME"),
          ".",
        ),
      );
      return;
    }
    body.replaceChildren(
      table({
        id: "apps-table",
        caption: "Apps",
        head: ["App", "Status", "Release", "Domains", "Replicas", "Last deploy"],
        rows,
        attrs: (r) => ({ "data-app": r.app.name }),
        cells,
      }),
    );
  }

  function cells({ app, release, replicas }) {
    const serving = replicas.filter((r) => r.role === "serving");
    const healthy = serving.filter((r) => r.health === "healthy").length;
    const latest = app.latest;
    return [
      h("a", { href: `#/apps/${enc(app.name)}`, class: "app-link" }, app.name),
      badge(app.status),
      release
        ? h(
            "span",
            { class: "release" },
            h("code", {}, release.commit ? shortSha(release.commit) : release.kind),
            release.commit_message ? h("span", { class: "muted" }, ` ${release.commit_message.split("\n")[0]}`) : null,
          )
        : h("span", { class: "muted" }, "none"),
      h(
        "ul",
        { class: "domains" },
        (app.urls || []).map((u) => h("li", {}, h("a", { href: u, rel: "noopener noreferrer" }, u.replace(/^https?:\/\//, "").replace(/\/$/, "")))),
      ),
      h("span", { title: "healthy serving replicas / desired" }, `${healthy}/${app.replicas || 1}`),
      latest
        ? h(
            "span",
            {},
            h("a", { href: `#/apps/${enc(app.name)}/deployments/${enc(latest.id)}`, "aria-label": `${latest.kind} ${latest.status}, log of deployment ${latest.id}` }, `${latest.kind} ${latest.status}`),
            " ",
            ageEl(latest.created_at),
          )
        : h("span", { class: "muted" }, "never"),
    ];
  }

  load();
  // Every change is one of the list's: an app's, or a deployment of one of them.
  const off = listen(debounce(load));
  const timer = setInterval(load, 30000);
  const ages = setInterval(() => refreshAges(body), 5000);
  return {
    stop() {
      stopped = true;
      off();
      clearInterval(timer);
      clearInterval(ages);
    },
  };
}
