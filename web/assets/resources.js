// An app's Resources tab: its replicas (GET /apps/NAME/replicas) — the node each runs on, its
// health, container, the upstream address every node's Caddy dials, the release (deployment and
// image) it runs, whether it serves or stands by, and since when — beside the replicas the app
// asks for. Read again every 5 s.

import { api } from "./api.js";
import { h, enc, ageEl, refreshAges, badge, table } from "./dom.js";

export function resourcesTab(panel, ctx) {
  const { name } = ctx;
  const summary = h("p", { id: "replicas-summary" }, "Loading replicas…");
  const body = h("div", { id: "replicas" });
  panel.replaceChildren(h("h2", { id: "resources-title" }, "Replicas"), summary, body);

  let stopped = false;
  let last = "";
  let replicas = null;

  function describe() {
    if (!replicas) return;
    const want = ctx.app ? ctx.app.replicas || 1 : null;
    const serving = replicas.filter((r) => r.role === "serving");
    const healthy = serving.filter((r) => r.health === "healthy").length;
    const nodes = new Set(serving.map((r) => r.node)).size;
    const standby = replicas.length - serving.length;
    summary.textContent =
      `${healthy} healthy of ${serving.length} serving` +
      (want === null ? "" : ` (${want} wanted)`) +
      `, on ${nodes} node${nodes === 1 ? "" : "s"}` +
      (standby ? `; ${standby} on standby for an instant rollback` : "") +
      ".";
    summary.className = want !== null && healthy < want ? "error" : "";
  }

  async function load() {
    try {
      const got = await api("GET", `/apps/${enc(name)}/replicas`);
      if (stopped) return;
      replicas = got;
      const key = JSON.stringify(got);
      if (key !== last) {
        last = key;
        render();
      }
      describe();
      refreshAges(body);
    } catch (e) {
      if (stopped || ctx.failed(e)) return;
      summary.textContent = `Cannot list the replicas: ${e.message}`;
      summary.className = "error";
    }
  }

  function render() {
    if (!replicas.length) {
      body.replaceChildren(h("p", { class: "card" }, `No replica of ${name} runs. A successful deployment starts them.`));
      return;
    }
    body.replaceChildren(
      table({
        id: "replicas-table",
        caption: `Replicas of ${name}`,
        head: ["Container", "Node", "Health", "Role", "Upstream", "Release", "Since"],
        rows: replicas,
        attrs: (r) => ({ "data-container": r.container, "data-node": r.node }),
        cells: (r) => [
          // Docker's short form of a container id, as `docker ps` shows it.
          h("code", { title: r.container }, /^[0-9a-f]{64}$/.test(r.container) ? r.container.slice(0, 12) : r.container),
          r.node,
          badge(r.health),
          r.role,
          h("code", {}, r.upstream),
          h(
            "span",
            {},
            h("a", { href: `#/apps/${enc(name)}/deployments/${enc(r.deployment)}`, "aria-label": `Deployment ${r.deployment}` }, r.deployment.slice(0, 10)),
            r.image ? h("code", { class: "muted block" }, r.image.replace(/^sha256:/, "").slice(0, 40)) : null,
          ),
          r.since ? ageEl(r.since) : "",
        ],
      }),
    );
  }

  const off = ctx.onApp(() => describe());
  load();
  const timer = setInterval(load, 5000);
  return {
    stop() {
      stopped = true;
      off();
      clearInterval(timer);
    },
  };
}
