// The Nodes page: every node with its status (and whether it is cordoned), labels, capacity,
// the host's latest figures, its heartbeat's age and the jobs it runs; Cordon / Uncordon, and
// Drain (with a confirmation) for an admin token. Read again every 5 s (GET /nodes).

import { api, allowed, session } from "./api.js";
import { h, enc, ageEl, refreshAges, badge, confirmIn, confirmDialog, messageArea, bytes, table } from "./dom.js";

export function nodesPage(root, failed) {
  const status = h("p", { class: "muted", id: "nodes-status" }, "Loading nodes…");
  const readOnly = h("p", { class: "note", id: "nodes-read-only", hidden: true });
  const messages = messageArea("nodes-message");
  const body = h("div", { id: "nodes" });
  const dialog = confirmDialog();
  root.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Nodes")), status, readOnly, messages.el, body, dialog);
  let last = "";
  let stopped = false;

  const show = messages.show;

  function permissions() {
    const may = allowed("admin", "cordoning and draining nodes");
    readOnly.hidden = may.ok;
    readOnly.textContent = may.ok ? "" : may.reason;
    for (const b of body.querySelectorAll("button")) {
      b.disabled = !may.ok;
      if (!may.ok) b.setAttribute("aria-describedby", "nodes-read-only");
    }
    document.getElementById("who-scope").textContent = session.scope ? `Token scope: ${session.scope}` : "Signed in";
  }

  // A 403 taught the token's scope: the buttons follow it.
  const act = messages.act(failed, () => permissions());

  async function cordon(node, on) {
    const verb = on ? "cordon" : "uncordon";
    const n = await act(on ? "Cordon" : "Uncordon", () => api("POST", `/nodes/${enc(node.name)}/${verb}`));
    if (n) show(on ? `${node.name} is cordoned: nothing new is placed on it.` : `${node.name} takes new work again.`);
    load();
  }

  async function drain(node) {
    const yes = await confirmIn(
      dialog,
      `Drain ${node.name}?`,
      `${node.name} is cordoned and every replica on it moves to other nodes, one deployment per app.`,
      "Drain",
    );
    if (!yes) return;
    const r = await act("Drain", () => api("POST", `/nodes/${enc(node.name)}/drain`));
    if (r) {
      const n = r.deployments.length;
      show(`${node.name} is draining: ${n} deployment${n === 1 ? "" : "s"} moving its replicas${n ? ` (${r.deployments.join(", ")})` : ""}.`);
    }
    load();
  }

  async function load() {
    try {
      const nodes = await api("GET", "/nodes");
      if (stopped) return;
      // The heartbeat's time changes every beat; the row is drawn again only when something else does.
      const key = JSON.stringify(nodes.map((n) => ({ ...n, last_heartbeat: 0, host: n.host && { ...n.host, ts: 0 } })));
      if (key !== last) {
        last = key;
        render(nodes);
      }
      for (const n of nodes) {
        const t = body.querySelector(`tr[data-node="${CSS.escape(n.name)}"] time`);
        if (t) t.dataset.ts = n.last_heartbeat;
      }
      refreshAges(body);
      status.textContent = `${nodes.length} node${nodes.length === 1 ? "" : "s"} · updated every 5 s`;
      permissions();
    } catch (e) {
      if (stopped || failed(e)) return;
      status.textContent = `Cannot list the nodes: ${e.message}`;
      status.className = "error";
    }
  }

  function render(nodes) {
    if (!nodes.length) {
      body.replaceChildren(h("p", { class: "card" }, "No node has registered yet. Start one with ", h("code", {}, "berth node"), "."));
      return;
    }
    body.replaceChildren(
      table({
        id: "nodes-table",
        caption: "Nodes",
        head: ["Node", "Status", "Labels", "Capacity", "Usage", "Heartbeat", "Jobs", "Actions"],
        rows: nodes,
        attrs: (n) => ({ "data-node": n.name }),
        cells,
      }),
    );
  }

  function cells(n) {
    const labels = Object.entries(n.labels || {});
    const host = n.host;
    return [
      h("span", {}, n.name, h("br", {}), h("span", { class: "muted" }, `${n.address} · ${n.version}`)),
      h("span", {}, badge(n.status), n.cordoned ? [" ", h("span", { class: "badge s-cordoned" }, "cordoned")] : null),
      labels.length ? h("ul", { class: "labels" }, labels.map(([k, v]) => h("li", {}, h("code", {}, `${k}=${v}`)))) : h("span", { class: "muted" }, "none"),
      `${n.cpus} CPU${n.cpus === 1 ? "" : "s"} · ${n.build_slots} build slot${n.build_slots === 1 ? "" : "s"}`,
      host
        ? h(
            "span",
            {},
            `CPU ${host.cpu_pct.toFixed(0)}% · memory ${bytes(host.mem_total_bytes - host.mem_available_bytes)} of ${bytes(host.mem_total_bytes)}`,
            h("br", {}),
            h("span", { class: "muted" }, `disk ${bytes(host.disk_available_bytes)} free · ${host.containers} container${host.containers === 1 ? "" : "s"}`),
          )
        : h("span", { class: "muted" }, "no sample yet"),
      ageEl(n.last_heartbeat),
      String(n.running_jobs),
      h(
        "span",
        { class: "actions" },
        n.cordoned
          ? h("button", { type: "button", class: "uncordon", "aria-label": `Uncordon ${n.name}`, onclick: () => cordon(n, false) }, "Uncordon")
          : h("button", { type: "button", class: "cordon", "aria-label": `Cordon ${n.name}`, onclick: () => cordon(n, true) }, "Cordon"),
        " ",
        h("button", { type: "button", class: "drain quiet", "aria-label": `Drain ${n.name}`, onclick: () => drain(n) }, "Drain"),
      ),
    ];
  }

  load();
  const timer = setInterval(load, 5000);
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
