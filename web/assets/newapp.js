// The New app page (#/new): a form for POST /api/v1/apps — name, repository, branch, build pack
// (with Analyze: POST /api/v1/analyze, a preview of what the `auto` pack would build, whose port
// and pack can be taken over), port, domains, variables (plain ones go in the create; a secret's
// value goes to PUT /apps/NAME/env/KEY after it, sealed, never shown again) and the health check.
// The API's message goes next to the field it names; nothing typed is lost on an error. Done:
// the app's page.

import { api, allowed } from "./api.js";
import { h, enc, badge, announce } from "./dom.js";
import { field, fieldError, clearErrors, showError } from "./forms.js";

// The health check's fields as the API's `health_check` has them: key, label, help.
const HEALTH = [
  ["path", "Path", "The HTTP path probed; default /."],
  ["port", "Port", "Default: the app's port."],
  ["interval_ms", "Interval (ms)", "Between probes; default 250."],
  ["timeout_ms", "Timeout (ms)", "Of one probe; default 2000."],
  ["retries", "Retries", "Failed probes before a running replica counts as unhealthy; default 3."],
  ["deadline_s", "Deadline (s)", "How long a new replica has to become healthy; default 60."],
  ["healthy_threshold", "Healthy threshold", "Passing probes in a row that make it healthy; default 1."],
];

const hcId = (k) => `hc-${k.replace(/_/g, "-")}`;

// Which field an API message is about: the JSON path of a body the API could not read, or the
// words its checks begin with. Null: the whole form.
function fieldFor(message) {
  const at = /^invalid JSON body at ([\w.[\]]+)/.exec(message);
  const key = at ? at[1] : null;
  const is = (re) => (key ? re.test(key) : re.test(message));
  if (key ? /^name$/.test(key) : /^app name|^an app named/.test(message)) return "app-name";
  if (is(key ? /^port$/ : /^port\b/)) return "app-port";
  if (is(key ? /^(branch|ref)$/ : /^(branch|ref)\b/)) return "app-branch";
  if (is(key ? /^(repo|git_credential)/ : /^repo\b|repositor|^git_credential/)) return "app-repo";
  if (is(key ? /^build_pack$/ : /^build_pack\b/)) return "app-build-pack";
  if (is(key ? /^dockerfile$/ : /^dockerfile\b/)) return "app-dockerfile";
  if (is(key ? /^context$/ : /^context\b/)) return "app-context";
  if (is(key ? /^static_dir$/ : /^static_dir\b/)) return "app-static-dir";
  const hc = /health_check[ .](\w+)/.exec(key || message);
  if (hc && HEALTH.some(([k]) => k === hc[1])) return hcId(hc[1]);
  if (is(key ? /^domains/ : /domain|is reserved|an IP address/)) return "app-domains";
  if (is(key ? /^env/ : /variable|^the value of|^env\b/)) return "vars";
  return null;
}

export function newAppPage(root, failed) {
  const formError = h("p", { class: "field-error", id: "new-app-error", role: "alert", tabindex: "-1", hidden: true });
  const readOnly = h("p", { class: "note", id: "new-app-read-only", hidden: true });

  const name = h("input", { type: "text", name: "name", required: true, autocomplete: "off", spellcheck: "false", "aria-required": "true" });
  const repo = h("input", { type: "text", name: "repo", autocomplete: "off", spellcheck: "false" });
  const branch = h("input", { type: "text", name: "branch", autocomplete: "off", spellcheck: "false" });
  const pack = h(
    "select",
    { name: "build_pack" },
    h("option", { value: "dockerfile" }, "Dockerfile: the repository's own"),
    h("option", { value: "auto" }, "Auto: Berth reads the source and writes one"),
    h("option", { value: "static" }, "Static: a directory served as files"),
  );
  const dockerfile = h("input", { type: "text", name: "dockerfile", autocomplete: "off", spellcheck: "false" });
  const context = h("input", { type: "text", name: "context", autocomplete: "off", spellcheck: "false" });
  const staticDir = h("input", { type: "text", name: "static_dir", autocomplete: "off", spellcheck: "false" });
  const port = h("input", { type: "text", name: "port", inputmode: "numeric", required: true, autocomplete: "off", "aria-required": "true" });
  const domains = h("textarea", { name: "domains", rows: "2", spellcheck: "false" });
  const analyzeBtn = h("button", { type: "button", id: "analyze", class: "quiet" }, "Analyze");
  const analysis = h("section", { id: "analysis", "aria-live": "polite", "aria-labelledby": "analysis-title", hidden: true });
  const submit = h("button", { type: "submit", id: "create-app" }, "Create app");

  const dockerfileField = field("app-dockerfile", "Dockerfile", dockerfile, "Its path relative to the context; default Dockerfile.");
  const staticField = field("app-static-dir", "Static directory", staticDir, "The directory served, relative to the context; default: the one the analysis finds.");

  // Variables: one row each — name, value, where it goes, secret.
  const varRows = h("div", { id: "var-rows" });
  const varsError = h("p", { class: "field-error", id: "vars-error", hidden: true });
  let varCount = 0;
  function addVar() {
    varCount += 1;
    const n = varCount;
    const key = h("input", { type: "text", class: "var-key", id: `var-key-${n}`, "aria-label": `Name of variable ${n}`, placeholder: "NAME", autocomplete: "off", spellcheck: "false" });
    const value = h("input", { type: "text", class: "var-value", id: `var-value-${n}`, "aria-label": `Value of variable ${n}`, placeholder: "value", autocomplete: "off", spellcheck: "false" });
    const scope = h(
      "select",
      { class: "var-scope", id: `var-scope-${n}`, "aria-label": `Where variable ${n} goes` },
      h("option", { value: "runtime" }, "Container"),
      h("option", { value: "build" }, "Build"),
      h("option", { value: "both" }, "Both"),
    );
    const secret = h("input", { type: "checkbox", class: "var-secret", id: `var-secret-${n}` });
    // A secret's value is not shown as it is typed.
    secret.addEventListener("change", () => (value.type = secret.checked ? "password" : "text"));
    const row = h(
      "div",
      { class: "var-row", "data-var": n },
      key,
      value,
      scope,
      h("span", { class: "check" }, secret, h("label", { for: secret.id }, "Secret", h("span", { class: "visually-hidden" }, ` (variable ${n})`))),
      h("button", { type: "button", class: "quiet remove-var", "aria-label": `Remove variable ${n}`, onclick: () => row.remove() }, "Remove"),
    );
    varRows.append(row);
    return key;
  }
  const addVarBtn = h("button", { type: "button", id: "add-var", class: "quiet", onclick: () => addVar().focus() }, "Add variable");
  addVar();

  const healthFields = HEALTH.map(([k, label, help]) =>
    field(hcId(k), label, h("input", { type: "text", name: `health_check.${k}`, inputmode: k === "path" ? null : "numeric", autocomplete: "off", spellcheck: "false" }), help),
  );

  const form = h(
    "form",
    { id: "new-app-form", class: "card form", novalidate: true, "aria-labelledby": "new-app-title" },
    formError,
    field("app-name", "Name", name, "Lowercase letters, digits and '-': it names the app and its default domain."),
    field("app-repo", "Repository", repo, "A git URL (https or SSH). Empty: an app deployed from uploaded directories only."),
    field("app-branch", "Branch", branch, "Default main."),
    h(
      "fieldset",
      { class: "group" },
      h("legend", {}, "Build"),
      field("app-build-pack", "Build pack", pack),
      dockerfileField,
      staticField,
      field("app-context", "Context", context, "The directory built, relative to the repository root; default: the root."),
      h("div", { class: "row" }, analyzeBtn, h("span", { class: "help", id: "analyze-help" }, "What Berth would build from the repository and branch above.")),
      analysis,
    ),
    field("app-port", "Port", port, "The port the app listens on inside its container (1 to 65535)."),
    field("app-domains", "Domains", domains, "One per line. Empty: NAME under the base domain."),
    h(
      "fieldset",
      { class: "group", id: "vars", "aria-describedby": "vars-help" },
      h("legend", {}, "Variables"),
      h("p", { class: "help", id: "vars-help" }, "Given to the container, to the build (as build args), or both. A secret is stored sealed and never shown again."),
      varRows,
      varsError,
      addVarBtn,
    ),
    h("fieldset", { class: "group" }, h("legend", {}, "Health check"), h("div", { class: "grid" }, healthFields)),
    h("div", { class: "row" }, submit, h("a", { href: "#/" }, "Cancel")),
  );
  analyzeBtn.setAttribute("aria-describedby", "analyze-help");

  root.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Apps"), " / New app"),
    h("div", { class: "page-head" }, h("h1", { id: "new-app-title" }, "New app")),
    readOnly,
    form,
  );

  function showPack() {
    dockerfileField.hidden = pack.value !== "dockerfile";
    staticField.hidden = pack.value !== "static";
  }
  pack.addEventListener("change", showPack);
  showPack();

  function permissions() {
    const may = allowed("admin", "creating an app");
    readOnly.hidden = may.ok;
    readOnly.textContent = may.ok ? "" : may.reason;
    for (const b of [submit, analyzeBtn]) {
      b.disabled = !may.ok;
      if (!may.ok) b.setAttribute("aria-describedby", "new-app-read-only");
    }
  }
  permissions();

  function error(message) {
    const id = fieldFor(message);
    if (id === "vars") {
      // The row whose name the message quotes, else the first one.
      const keys = [...varRows.querySelectorAll(".var-key")];
      const named = keys.find((k) => k.value && message.includes(k.value)) || keys[0];
      varsError.textContent = message;
      varsError.hidden = false;
      if (named) {
        named.setAttribute("aria-invalid", "true");
        named.setAttribute("aria-describedby", "vars-error");
        named.focus();
      }
      return;
    }
    showError(form, id, message, formError);
  }

  // The values of the form as the API takes them, or an error sentence about one field.
  function body() {
    const b = { name: name.value.trim() };
    if (repo.value.trim()) b.repo = repo.value.trim();
    if (branch.value.trim()) b.branch = branch.value.trim();
    b.build_pack = pack.value;
    if (pack.value === "dockerfile" && dockerfile.value.trim()) b.dockerfile = dockerfile.value.trim();
    if (pack.value === "static" && staticDir.value.trim()) b.static_dir = staticDir.value.trim();
    if (context.value.trim()) b.context = context.value.trim();
    const p = port.value.trim();
    if (!/^\d+$/.test(p)) return { field: "app-port", message: p ? `port ${JSON.stringify(p)} is not a number: give 1 to 65535` : "port is needed: the port the app listens on (1 to 65535)" };
    b.port = Number(p);
    const ds = domains.value.split(/[\s,]+/).filter(Boolean);
    if (ds.length) b.domains = ds;
    const health = {};
    for (const [k] of HEALTH) {
      const v = form.querySelector(`#${hcId(k)}`).value.trim();
      if (!v) continue;
      if (k === "path") health.path = v;
      else if (/^\d+$/.test(v)) health[k] = Number(v);
      else return { field: hcId(k), message: `health_check.${k} ${JSON.stringify(v)} is not a number` };
    }
    if (Object.keys(health).length) b.health_check = health;
    const env = { runtime: {}, build: {} };
    const secrets = [];
    for (const row of varRows.querySelectorAll(".var-row")) {
      const key = row.querySelector(".var-key").value.trim();
      const value = row.querySelector(".var-value").value;
      const scope = row.querySelector(".var-scope").value;
      if (!key && !value) continue;
      if (row.querySelector(".var-secret").checked) {
        secrets.push({ key, value, scope });
        continue;
      }
      if (scope !== "build") env.runtime[key] = value;
      if (scope !== "runtime") env.build[key] = value;
    }
    if (Object.keys(env.runtime).length || Object.keys(env.build).length) b.env = env;
    return { body: b, secrets };
  }

  let busy = false;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (busy) return;
    clearErrors(form);
    formError.hidden = true;
    const got = body();
    if (got.message) {
      fieldError(form, got.field, got.message);
      form.querySelector(`#${got.field}`).focus();
      return;
    }
    busy = true;
    submit.disabled = true;
    submit.textContent = "Creating…";
    try {
      const app = await api("POST", "/apps", got.body);
      // Secrets after the create: their values go sealed through the variables API.
      for (const s of got.secrets) {
        try {
          await api("PUT", `/apps/${enc(app.name)}/env/${enc(s.key)}`, { value: s.value, scope: s.scope, secret: true });
        } catch (err) {
          if (failed(err)) return;
          formError.replaceChildren(
            `The app ${app.name} was created, but its secret ${s.key} was not set: ${err.message}. Set it on `,
            h("a", { href: `#/apps/${enc(app.name)}` }, "the app's page"),
            " or with ",
            h("code", {}, `berth env set ${app.name} --secret ${s.key}=…`),
            ".",
          );
          formError.hidden = false;
          formError.focus();
          return;
        }
      }
      announce(`App ${app.name} created`);
      location.hash = `#/apps/${enc(app.name)}`;
    } catch (err) {
      if (failed(err)) return;
      error(err.message);
      permissions(); // a 403 taught the token's scope
    } finally {
      busy = false;
      submit.textContent = "Create app";
      permissions();
    }
  });

  analyzeBtn.addEventListener("click", async () => {
    clearErrors(form);
    formError.hidden = true;
    if (!repo.value.trim()) {
      fieldError(form, "app-repo", "Give a repository to analyze.");
      repo.focus();
      return;
    }
    const req = { repo: repo.value.trim() };
    if (branch.value.trim()) req.ref = branch.value.trim();
    if (context.value.trim()) req.context = context.value.trim();
    if (pack.value === "static") {
      req.build_pack = "static";
      if (staticDir.value.trim()) req.static_dir = staticDir.value.trim();
    }
    analyzeBtn.disabled = true;
    analysis.hidden = false;
    analysis.replaceChildren(h("h2", { id: "analysis-title" }, "Analysis"), h("p", { class: "help" }, "Cloning and reading the repository…"));
    try {
      const a = await api("POST", "/analyze", req);
      showAnalysis(a);
    } catch (err) {
      if (failed(err)) return;
      if (fieldFor(err.message)) {
        // About a field (the repository cannot be reached, no such branch): said there.
        analysis.hidden = true;
        error(err.message);
      } else {
        // What the analysis found (nothing it can build): its answer, in its place.
        analysis.replaceChildren(h("h2", { id: "analysis-title" }, "Analysis"), h("p", { class: "error", id: "analysis-error", role: "alert" }, err.message));
      }
      permissions(); // a 403 taught the token's scope
    } finally {
      analyzeBtn.disabled = false;
      permissions();
    }
  });

  function showAnalysis(a) {
    const usePack = pack.value === "static" ? "static" : "auto";
    const use = h(
      "button",
      {
        type: "button",
        id: "use-analysis",
        onclick: () => {
          pack.value = usePack;
          port.value = String(a.port);
          showPack();
          announce(`Build pack ${usePack} and port ${a.port} taken from the analysis`);
          port.focus();
        },
      },
      `Use build pack ${usePack} and port ${a.port}`,
    );
    analysis.replaceChildren(
      h("h2", { id: "analysis-title" }, "Analysis"),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Detected"),
        h("dd", { id: "analysis-kind" }, badge(a.kind)),
        h("dt", {}, "Port"),
        h("dd", { id: "analysis-port" }, String(a.port)),
        h("dt", {}, "Starts"),
        h("dd", {}, h("code", {}, a.start)),
      ),
      h("ul", { class: "reasons" }, a.reasons.map((r) => h("li", {}, r))),
      h("details", {}, h("summary", {}, "The Dockerfile Berth would write"), h("pre", { class: "dockerfile", tabindex: "0", "aria-label": "Generated Dockerfile" }, a.dockerfile)),
      h("div", { class: "row" }, use),
    );
    if (!port.value.trim()) port.value = String(a.port);
  }

  name.focus();
  return { stop() {} };
}
