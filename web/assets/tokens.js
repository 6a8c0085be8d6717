// The Tokens page (#/tokens, admin): the API tokens (GET /tokens: name, scope, id, created,
// expiry, last use — never a value), a form that makes one (POST /tokens: name, scope, expiry)
// and shows its value this once with a Copy button, and Revoke (DELETE /tokens/ID) behind a
// confirmation. Any other token sees why instead.

import { api, allowed } from "./api.js";
import { h, enc, ageEl, refreshAges, badge, announce, confirmIn, confirmDialog, table } from "./dom.js";
import { field, fieldError, clearErrors, showError } from "./forms.js";

// Which field a message of POST /tokens is about.
function fieldFor(message) {
  const at = /^invalid JSON body at (\w+)/.exec(message);
  const key = at ? at[1] : (/^(name|scope|expires_in)\b/.exec(message) || [])[1];
  return { name: "token-name", scope: "token-scope", expires_in: "token-expires" }[key] || null;
}

export function tokensPage(root, failed) {
  const may = allowed("admin", "managing API tokens");
  if (!may.ok) {
    root.replaceChildren(
      h("div", { class: "page-head" }, h("h1", {}, "Tokens")),
      h("p", { class: "note", id: "tokens-reason" }, may.reason),
    );
    return { stop() {} };
  }

  const status = h("p", { class: "muted", id: "tokens-status" }, "Loading tokens…");
  const message = h("p", { id: "tokens-message", role: "status", tabindex: "-1" });
  const created = h("section", { id: "new-token", class: "card", "aria-labelledby": "new-token-title", hidden: true });
  const body = h("div", { id: "tokens" });
  const dialog = confirmDialog();
  const formError = h("p", { class: "field-error", id: "token-form-error", role: "alert", tabindex: "-1", hidden: true });
  const name = h("input", { type: "text", name: "name", required: true, "aria-required": "true", autocomplete: "off", spellcheck: "false" });
  const scope = h(
    "select",
    { name: "scope" },
    h("option", { value: "read" }, "read: sees everything, changes nothing"),
    h("option", { value: "deploy" }, "deploy: read, and deploy, roll back, restart, cancel"),
    h("option", { value: "admin" }, "admin: everything"),
    h("option", { value: "metrics" }, "metrics: GET /metrics only"),
  );
  const expires = h("input", { type: "text", name: "expires_in", placeholder: "e.g. 30d", autocomplete: "off", spellcheck: "false" });
  const submit = h("button", { type: "submit", id: "create-token" }, "Create token");
  const form = h(
    "form",
    { id: "token-form", class: "card form", novalidate: true, "aria-labelledby": "token-form-title" },
    h("h2", { id: "token-form-title" }, "New token"),
    formError,
    h(
      "div",
      { class: "grid" },
      field("token-name", "Name", name, "Who or what uses it, e.g. ci."),
      field("token-scope", "Scope", scope),
      field("token-expires", "Expires in", expires, "A duration such as 12h, 30d or 90m. Empty: until revoked."),
    ),
    h("div", { class: "row" }, submit),
  );

  root.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Tokens")),
    message,
    created,
    form,
    h("h2", { id: "tokens-title" }, "Tokens"),
    status,
    body,
    dialog,
  );
  let stopped = false;

  function show(text, isError) {
    message.textContent = text;
    message.className = isError ? "error" : "ok";
  }

  function showCreated(t) {
    const value = h("input", { type: "text", id: "new-token-value", readonly: true, value: t.token, spellcheck: "false", "aria-describedby": "new-token-once" });
    const copy = h(
      "button",
      {
        type: "button",
        id: "copy-token",
        onclick: async () => {
          value.select();
          try {
            await navigator.clipboard.writeText(t.token);
            copied.textContent = "Copied.";
          } catch {
            copied.textContent = "Selected: copy it with Ctrl+C (this browser did not let the page copy).";
          }
        },
      },
      "Copy",
    );
    const copied = h("span", { class: "help", id: "copy-state", role: "status" });
    created.replaceChildren(
      h("h2", { id: "new-token-title" }, `Token ${t.name} (${t.scope}) created`),
      h("p", { class: "note", id: "new-token-once" }, "This is the only time its value is shown: copy it now."),
      h("label", { for: "new-token-value" }, "The token"),
      h("div", { class: "row" }, value, copy, copied),
      h("button", { type: "button", class: "quiet", id: "new-token-done", onclick: () => { created.hidden = true; created.replaceChildren(); name.focus(); } }, "Done"),
    );
    created.hidden = false;
    copy.focus();
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const req = { name: name.value.trim(), scope: scope.value };
    if (expires.value.trim()) req.expires_in = expires.value.trim();
    if (!req.name) {
      fieldError(form, "token-name", "name is needed: who or what uses the token");
      name.focus();
      return;
    }
    submit.disabled = true;
    try {
      const t = await api("POST", "/tokens", req);
      name.value = "";
      expires.value = "";
      show("");
      announce(`Token ${t.name} created`);
      showCreated(t);
      load();
    } catch (err) {
      if (failed(err)) return;
      showError(form, fieldFor(err.message), err.message, formError);
    } finally {
      submit.disabled = false;
    }
  });

  async function revoke(t) {
    const yes = await confirmIn(
      dialog,
      `Revoke ${t.name}?`,
      `Every request with the token ${t.name} (${t.scope}, ${t.id}) is refused from now on. This cannot be undone.`,
      "Revoke",
    );
    if (!yes) return;
    try {
      await api("DELETE", `/tokens/${enc(t.id)}`);
      show(`Token ${t.name} is revoked.`);
    } catch (err) {
      if (failed(err)) return;
      show(`Revoke failed: ${err.message}`, true);
    }
    await load();
    message.focus();
  }

  async function load() {
    try {
      const tokens = await api("GET", "/tokens");
      if (stopped) return;
      render(tokens);
      status.className = "muted";
      status.textContent = `${tokens.length} token${tokens.length === 1 ? "" : "s"} (besides the one in the configuration, which is not listed)`;
    } catch (e) {
      if (stopped || failed(e)) return;
      status.textContent = `Cannot list the tokens: ${e.message}`;
      status.className = "error";
    }
  }

  function render(tokens) {
    if (!tokens.length) {
      body.replaceChildren();
      return;
    }
    const when = (ms, none) => (ms ? ageEl(ms) : h("span", { class: "muted" }, none));
    const expiry = (ms) => (ms ? h("time", { datetime: new Date(ms).toISOString() }, new Date(ms).toLocaleString()) : h("span", { class: "muted" }, "never"));
    body.replaceChildren(
      table({
        id: "tokens-table",
        caption: "API tokens",
        head: ["Name", "Scope", "ID", "Created", "Expires", "Last used", "Actions"],
        rows: tokens,
        attrs: (t) => ({ "data-token": t.id }),
        cells: (t) => [
          t.name,
          badge(t.scope),
          h("code", {}, t.id),
          when(t.created_at, ""),
          expiry(t.expires_at),
          when(t.last_used_at, "never"),
          h("button", { type: "button", class: "revoke quiet", "aria-label": `Revoke ${t.name} (${t.id})`, onclick: () => revoke(t) }, "Revoke"),
        ],
      }),
    );
    refreshAges(body);
  }

  load();
  name.focus();
  return {
    stop() {
      stopped = true;
    },
  };
}
