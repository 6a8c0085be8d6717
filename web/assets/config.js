// An app's Configuration tab: its settings (build: repository, branch, build pack, Dockerfile,
// context, auto-deploy; runtime: port, domains, replicas; the health check), saved with one
// PATCH of what changed, and its variables (GET /apps/NAME/env): plain ones with their values,
// secrets masked — set (PUT) without being shown, never read back — and removed (DELETE) behind
// a confirmation. A change applies at the next deployment, so every saved change offers
// "Redeploy to apply". The API's validation messages go next to the field they name; what was
// typed stays.

import { api, allowed } from "./api.js";
import { h, enc, table } from "./dom.js";
import { field, clearErrors, showError, namedField } from "./forms.js";

const num = (v) => (v === "" ? undefined : Number(v));

// A field of this tab: `{id, input, wrap, names}` — `names` the words the API's messages use
// for it (forms.js's `namedField` finds the field a message is about).
function input(id, label, el, names, help) {
  return { id, input: el, names, wrap: field(id, label, el, help) };
}

export function configTab(panel, ctx) {
  const { name } = ctx;
  const status = h("p", { id: "config-status", role: "status" });
  // Settings and variables are changed with an admin token (PATCH and PUT/DELETE env).
  const admin = allowed("admin", "changing settings and variables");
  const note = h("p", { class: "note", id: "config-read-only", hidden: admin.ok }, admin.ok ? "" : admin.reason);
  const guard = (b) => ctx.guard(b, "admin", "config-read-only");
  const apply = h("button", { type: "button", id: "redeploy" }, "Redeploy to apply");
  const pending = h("div", { class: "note", id: "config-pending", hidden: true }, h("span", { id: "config-pending-text" }), " ", apply);

  // Settings.
  const f = {
    repo: input("cfg-repo", "Repository", h("input", { type: "text", spellcheck: "false", autocomplete: "off" }), ["repo"]),
    branch: input("cfg-branch", "Branch", h("input", { type: "text", spellcheck: "false", autocomplete: "off" }), ["branch"]),
    build_pack: input("cfg-build-pack", "Build pack",
      h("select", {}, h("option", { value: "dockerfile" }, "Dockerfile"), h("option", { value: "auto" }, "auto (detected from the source)"), h("option", { value: "static" }, "static files")), ["build_pack"]),
    dockerfile: input("cfg-dockerfile", "Dockerfile", h("input", { type: "text", spellcheck: "false" }), ["dockerfile"], "Relative to the context."),
    context: input("cfg-context", "Context", h("input", { type: "text", spellcheck: "false" }), ["context"], "A directory of the repository."),
    auto_deploy: input("cfg-auto-deploy", "Deploy on push", h("input", { type: "checkbox" }), ["auto_deploy"]),
    port: input("cfg-port", "Port", h("input", { type: "number", min: "1", max: "65535", inputmode: "numeric" }), ["port"], "What the app listens on inside its container."),
    domains: input("cfg-domains", "Domains", h("textarea", { rows: "3", spellcheck: "false" }), ["domains", "domain"], "One per line."),
    replicas: input("cfg-replicas", "Replicas", h("input", { type: "number", min: "1", max: "100", inputmode: "numeric" }), ["replicas"]),
    hc_path: input("cfg-hc-path", "Path", h("input", { type: "text", spellcheck: "false" }), ["health_check.path", "path"]),
    hc_port: input("cfg-hc-port", "Port (empty: the app's)", h("input", { type: "number", min: "1", max: "65535", inputmode: "numeric" }), ["health_check.port"]),
    hc_interval: input("cfg-hc-interval", "Interval (ms)", h("input", { type: "number", min: "1", inputmode: "numeric" }), ["interval_ms", "health_check"]),
    hc_timeout: input("cfg-hc-timeout", "Timeout (ms)", h("input", { type: "number", min: "1", inputmode: "numeric" }), ["timeout_ms"]),
    hc_retries: input("cfg-hc-retries", "Retries", h("input", { type: "number", min: "0", inputmode: "numeric" }), ["retries"]),
    hc_deadline: input("cfg-hc-deadline", "Deadline (s)", h("input", { type: "number", min: "1", max: "3600", inputmode: "numeric" }), ["deadline_s", "health_check.deadline_s"]),
  };
  const fields = Object.values(f);
  const save = h("button", { type: "submit", id: "config-save" }, "Save");
  const formError = h("p", { class: "field-error", id: "config-error", role: "alert", tabindex: "-1", hidden: true });
  const form = h(
    "form",
    { id: "config-form", class: "card form", novalidate: true },
    h("fieldset", {}, h("legend", {}, "Build"), f.repo.wrap, f.branch.wrap, f.build_pack.wrap, f.dockerfile.wrap, f.context.wrap, f.auto_deploy.wrap),
    h("fieldset", {}, h("legend", {}, "Runtime"), f.port.wrap, f.domains.wrap, f.replicas.wrap),
    h("fieldset", {}, h("legend", {}, "Health check"), f.hc_path.wrap, f.hc_port.wrap, f.hc_interval.wrap, f.hc_timeout.wrap, f.hc_retries.wrap, f.hc_deadline.wrap),
    formError,
    h("div", { class: "actions" }, save),
  );

  // Variables.
  const vars = h("div", { id: "env" }, h("p", { class: "muted" }, "Loading variables…"));
  const v = {
    key: input("env-key", "Name", h("input", { type: "text", spellcheck: "false", autocomplete: "off", required: true }), ["environment variable name", "key"]),
    value: input("env-value", "Value", h("input", { type: "text", spellcheck: "false", autocomplete: "off" }), ["value"]),
    scope: input("env-scope", "Used",
      h("select", {}, h("option", { value: "runtime" }, "at run time"), h("option", { value: "build" }, "at build time"), h("option", { value: "both" }, "both")), ["scope"]),
    secret: input("env-secret", "Secret (stored sealed, never shown again)", h("input", { type: "checkbox" }), ["secret"]),
  };
  const varFields = Object.values(v);
  const varError = h("p", { class: "field-error", id: "env-error", role: "alert", tabindex: "-1", hidden: true });
  const addVar = h(
    "form",
    { id: "env-form", class: "card form inline-form", novalidate: true },
    h("fieldset", {}, h("legend", {}, "Set a variable"), v.key.wrap, v.value.wrap, v.scope.wrap, v.secret.wrap),
    varError,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "env-set" }, "Set")),
  );
  // A secret's value is typed like a password.
  v.secret.input.addEventListener("change", () => (v.value.input.type = v.secret.input.checked ? "password" : "text"));

  panel.replaceChildren(
    h("h2", { id: "config-title" }, "Configuration"),
    note,
    status,
    pending,
    form,
    h("h2", { id: "env-title" }, "Variables"),
    vars,
    addVar,
  );

  let stopped = false;
  let filled = false;

  function fill(app) {
    f.repo.input.value = app.repo;
    f.branch.input.value = app.branch;
    f.build_pack.input.value = app.build_pack || "dockerfile";
    f.dockerfile.input.value = app.dockerfile;
    f.context.input.value = app.context;
    f.auto_deploy.input.checked = !!app.auto_deploy;
    f.port.input.value = app.port;
    f.domains.input.value = (app.domains || []).join("\n");
    f.replicas.input.value = app.replicas || 1;
    const hc = app.health_check || {};
    f.hc_path.input.value = hc.path || "";
    f.hc_port.input.value = hc.port ?? "";
    f.hc_interval.input.value = hc.interval_ms ?? "";
    f.hc_timeout.input.value = hc.timeout_ms ?? "";
    f.hc_retries.input.value = hc.retries ?? "";
    f.hc_deadline.input.value = hc.deadline_s ?? "";
  }

  // What the form changes of `app`, as a PATCH body (empty: nothing).
  function changes(app) {
    const out = {};
    const text = (k, el) => {
      if (el.value.trim() !== String(app[k] ?? "")) out[k] = el.value.trim();
    };
    text("repo", f.repo.input);
    text("branch", f.branch.input);
    text("dockerfile", f.dockerfile.input);
    text("context", f.context.input);
    if (f.build_pack.input.value !== (app.build_pack || "dockerfile")) out.build_pack = f.build_pack.input.value;
    if (f.auto_deploy.input.checked !== !!app.auto_deploy) out.auto_deploy = f.auto_deploy.input.checked;
    if (f.port.input.value !== String(app.port)) out.port = num(f.port.input.value.trim()) ?? 0;
    if (f.replicas.input.value !== String(app.replicas || 1)) out.replicas = num(f.replicas.input.value.trim()) ?? 0;
    const domains = f.domains.input.value.split(/[\s,]+/).filter(Boolean);
    if (JSON.stringify(domains) !== JSON.stringify(app.domains || [])) out.domains = domains;
    const hc = app.health_check || {};
    const hcOut = {};
    if (f.hc_path.input.value.trim() !== (hc.path || "")) hcOut.path = f.hc_path.input.value.trim();
    for (const [k, el] of [
      ["port", f.hc_port.input],
      ["interval_ms", f.hc_interval.input],
      ["timeout_ms", f.hc_timeout.input],
      ["retries", f.hc_retries.input],
      ["deadline_s", f.hc_deadline.input],
    ]) {
      if (el.value.trim() !== String(hc[k] ?? "") && el.value.trim() !== "") hcOut[k] = Number(el.value.trim());
    }
    if (Object.keys(hcOut).length) out.health_check = hcOut;
    return out;
  }

  function changed(what) {
    pending.hidden = false;
    document.getElementById("config-pending-text").textContent = `${what} It applies at the next deployment.`;
    ctx.guard(apply);
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    formError.hidden = true;
    if (!ctx.app) return;
    const body = changes(ctx.app);
    if (!Object.keys(body).length) {
      status.textContent = "Nothing to save: the settings are as they were.";
      status.className = "";
      return;
    }
    save.disabled = true;
    try {
      const app = await api("PATCH", `/apps/${enc(name)}`, body);
      ctx.app = app;
      fill(app);
      status.textContent = `Saved: ${Object.keys(body).join(", ").replace(/_/g, " ")}.`;
      status.className = "ok";
      changed("The settings are saved.");
      ctx.reloadApp();
    } catch (err) {
      if (!ctx.failed(err)) showError(form, namedField(err.message, fields), err.message, formError);
    } finally {
      save.disabled = false;
      guard(save);
    }
  });

  async function removeVar(x) {
    const yes = await ctx.confirm(`Remove ${x.key}?`, `${name} loses the variable ${x.key} at its next deployment.`, "Remove");
    if (!yes) return;
    const r = await ctx.act(`Removing ${x.key}`, () => api("DELETE", `/apps/${enc(name)}/env/${enc(x.key)}`));
    if (r) {
      renderVars(r.env);
      changed(`${x.key} is removed.`);
    }
  }

  function renderVars(env) {
    if (!env.length) {
      vars.replaceChildren(h("p", { class: "muted" }, `${name} has no variables.`));
      return;
    }
    vars.replaceChildren(
      table({
        id: "env-table",
        caption: `Variables of ${name}`,
        head: ["Name", "Value", "Used", ""],
        rows: env,
        attrs: (x) => ({ "data-key": x.key, "data-scope": x.scope }),
        cells: (x) => {
          const rm = h("button", { type: "button", class: "quiet env-remove", "aria-label": `Remove ${x.key}` }, "Remove");
          rm.addEventListener("click", () => removeVar(x));
          guard(rm);
          return [
            h("code", {}, x.key),
            x.secret ? h("span", { class: "masked", "aria-label": "secret, not shown" }, "•••••• secret") : h("code", {}, x.value ?? ""),
            x.scope === "both" ? "build and run time" : x.scope === "build" ? "build time" : "run time",
            rm,
          ];
        },
      }),
    );
  }

  addVar.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(addVar);
    varError.hidden = true;
    const key = v.key.input.value.trim();
    if (!key) {
      showError(addVar, v.key.id, "Give the variable a name.", varError);
      return;
    }
    const body = { value: v.value.input.value, scope: v.scope.input.value, secret: v.secret.input.checked };
    try {
      const r = await api("PUT", `/apps/${enc(name)}/env/${enc(key)}`, body);
      renderVars(r.env);
      changed(`${key} is set${body.secret ? " (sealed)" : ""}.`);
      v.key.input.value = "";
      v.value.input.value = "";
      v.secret.input.checked = false;
      v.value.input.type = "text";
    } catch (err) {
      if (!ctx.failed(err)) showError(addVar, namedField(err.message, varFields), err.message, varError);
    }
  });

  apply.addEventListener("click", async () => {
    apply.disabled = true;
    const d = await ctx.deploy();
    apply.disabled = false;
    if (d) pending.hidden = true;
  });

  async function loadVars() {
    try {
      const env = await api("GET", `/apps/${enc(name)}/env`);
      if (!stopped) renderVars(env);
    } catch (e) {
      if (!stopped && !ctx.failed(e)) vars.replaceChildren(h("p", { class: "error" }, `Cannot list the variables: ${e.message}`));
    }
  }

  // The form is filled once, from the first read of the app: later reads do not overwrite what
  // is being typed.
  const off = ctx.onApp((app) => {
    if (filled) return;
    filled = true;
    fill(app);
  });
  guard(save);
  for (const b of addVar.querySelectorAll("button")) guard(b);
  loadVars();

  return {
    stop() {
      stopped = true;
      off();
    },
  };
}
