// An app's page: its name, status, domains and Deploy button, and its tabs, each a module of
// its own:
//   #/apps/NAME/monitoring       CPU, memory and network charts (monitoring.js)
//   #/apps/NAME/configuration    build settings, variables, domains, health check, replicas (config.js)
//   #/apps/NAME                  the deployments (deployments.js), also #/apps/NAME/deployments
//   #/apps/NAME/deployments/ID   the same with that deployment's log open
//   #/apps/NAME/resources        the replicas: node, health, container, upstream, release (resources.js)
//   #/apps/NAME/logs             the live runtime log of every replica (logs.js)
//
// A tab is `tab(panel, ctx)` → `{stop(), select?(deployment)}`; `panel` is the tab's section and
// `ctx` what the page shares with it (see `ctx` below). Switching tabs stops the one shown.

import { api, allowed, session } from "./api.js";
import { h, enc, badge, confirmIn, confirmDialog, messageArea } from "./dom.js";
import { listen, debounce } from "./events.js";
import { deploymentsTab } from "./deployments.js";
import { resourcesTab } from "./resources.js";
import { logsTab } from "./logs.js";
import { monitoringTab } from "./monitoring.js";
import { configTab } from "./config.js";

// In the order the tab bar shows them.
export const TABS = [
  { id: "monitoring", label: "Monitoring", tab: monitoringTab },
  { id: "configuration", label: "Configuration", tab: configTab },
  { id: "deployments", label: "Deployments", tab: deploymentsTab },
  { id: "resources", label: "Resources", tab: resourcesTab },
  { id: "logs", label: "Logs", tab: logsTab },
];

export const DEFAULT_TAB = "deployments";

export function appPage(root, name, tabId, selected, failed) {
  const title = h("h1", {}, name);
  const state = h("span", { id: "app-status" });
  const links = h("ul", { class: "domains inline", "aria-label": "Domains" });
  const deployBtn = h("button", { type: "button", id: "deploy" }, "Deploy");
  const readOnly = h("p", { class: "note", id: "read-only", hidden: true });
  const messages = messageArea("app-message");
  const nav = h("nav", { class: "tabs", "aria-label": "App sections" });
  const panel = h("section", { class: "tab", id: "tab-panel" });
  const dialog = confirmDialog();

  root.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Apps"), " / ", name),
    h("div", { class: "page-head" }, title, state, h("div", { class: "actions" }, deployBtn)),
    links,
    readOnly,
    messages.el,
    nav,
    panel,
    dialog,
  );

  let stopped = false;
  let shown = null; // {id, tab: {stop, select?}}
  const appListeners = new Set();

  // What the page shares with its tabs.
  const ctx = {
    name,
    failed,
    // The app as the API gave it last (null until read).
    app: null,
    // `fn(app)` after every read of the app; returns the function that takes it off.
    onApp(fn) {
      appListeners.add(fn);
      if (ctx.app) fn(ctx.app);
      return () => appListeners.delete(fn);
    },
    reloadApp: () => loadApp(),
    show: messages.show,
    act: messages.act(failed, () => permissions()),
    confirm: (titleText, text, yes) => confirmIn(dialog, titleText, text, yes),
    // {ok, reason} for an action that needs the `deploy` scope; `what` names it in the reason.
    mayDeploy: (what) => allowed("deploy", what),
    // Disables `button` when the token's scope is below `needed`, described by the element
    // `note` (which says why; the page's own note for the deploy scope). True when allowed.
    guard(button, needed = "deploy", note = "read-only") {
      const may = allowed(needed, "this");
      button.disabled = !may.ok;
      if (!may.ok) button.setAttribute("aria-describedby", note);
      return may.ok;
    },
    // Queues a deployment and opens its log.
    async deploy() {
      const d = await ctx.act("Deploy", () => api("POST", `/apps/${enc(name)}/deployments`, {}));
      if (d) {
        ctx.show(`Deployment ${d.id} queued.`);
        location.hash = `#/apps/${enc(name)}/deployments/${enc(d.id)}`;
      }
      return d;
    },
  };

  function permissions() {
    const may = allowed("deploy", "deploying, rolling back and cancelling");
    deployBtn.disabled = !may.ok;
    readOnly.hidden = may.ok;
    readOnly.textContent = may.ok ? "" : may.reason;
    if (!may.ok) deployBtn.setAttribute("aria-describedby", "read-only");
    document.getElementById("who-scope").textContent = session.scope ? `Token scope: ${session.scope}` : "Signed in";
  }

  deployBtn.addEventListener("click", async () => {
    deployBtn.disabled = true;
    await ctx.deploy();
    permissions();
  });

  async function loadApp() {
    try {
      const app = await api("GET", `/apps/${enc(name)}`);
      if (stopped) return;
      ctx.app = app;
      state.replaceChildren(badge(app.status));
      links.replaceChildren(...(app.urls || []).map((u) => h("li", {}, h("a", { href: u, rel: "noopener noreferrer" }, u))));
      for (const fn of appListeners) fn(app);
    } catch (e) {
      if (!stopped && !failed(e)) ctx.show(`Cannot read app ${name}: ${e.message}`, true);
    }
  }

  function renderNav(active) {
    nav.replaceChildren(
      ...TABS.map((t) =>
        h(
          "a",
          {
            href: `#/apps/${enc(name)}${t.id === DEFAULT_TAB ? "" : `/${t.id}`}`,
            id: `tab-${t.id}`,
            "aria-current": t.id === active ? "page" : "false",
          },
          t.label,
        ),
      ),
    );
  }

  // Shows tab `tabId` (the default when unknown) and, on the Deployments tab, `deployment`'s log.
  function route(tabId, deployment) {
    const t = TABS.find((x) => x.id === tabId) || TABS.find((x) => x.id === DEFAULT_TAB);
    if (shown && shown.id === t.id) {
      if (shown.tab.select) shown.tab.select(deployment);
      return;
    }
    if (shown) shown.tab.stop();
    appListeners.clear();
    renderNav(t.id);
    panel.replaceChildren();
    panel.setAttribute("aria-labelledby", `tab-${t.id}`);
    panel.dataset.tab = t.id;
    shown = { id: t.id, tab: t.tab(panel, ctx) };
    if (shown.tab.select) shown.tab.select(deployment);
    document.title = `${name} · ${t.label} · Berth`;
  }

  permissions();
  loadApp();
  route(tabId, selected);
  // The header's status and domains: read again when the API's events tell of a change of the
  // app or of one of its deployments, when a tab knows it changed, and every 30 s besides.
  const reload = debounce(loadApp);
  const off = listen((ev) => {
    if (ev.event !== "deployment" || ev.data.app === name) reload();
  });
  const timer = setInterval(loadApp, 30000);

  return {
    app: name,
    route,
    stop() {
      stopped = true;
      off();
      clearInterval(timer);
      if (shown) shown.tab.stop();
      if (dialog.open) dialog.close();
    },
  };
}
