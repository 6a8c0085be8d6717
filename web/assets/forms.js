// What the dashboard's forms share: a labelled field with its help and its error slot, and
// putting an API error next to the field it names (`aria-invalid`, `aria-describedby`) — or,
// when it names none, at the top of the form. Nothing typed is ever cleared by an error.

import { h } from "./dom.js";

// Adds `id` to the space-separated list in attribute `attr` of `el` (once).
function addTo(el, attr, id) {
  const ids = (el.getAttribute(attr) || "").split(/\s+/).filter(Boolean);
  if (!ids.includes(id)) ids.push(id);
  el.setAttribute(attr, ids.join(" "));
}

function removeFrom(el, attr, id) {
  const ids = (el.getAttribute(attr) || "").split(/\s+/).filter((x) => x && x !== id);
  if (ids.length) el.setAttribute(attr, ids.join(" "));
  else el.removeAttribute(attr);
}

// A field: its label, the control `input` (given the id `id`), a help line under it (optional)
// and an empty error line (`#ID-error`) that `fieldError` fills.
export function field(id, label, input, help) {
  input.id = id;
  const helpEl = help ? h("p", { class: "help", id: `${id}-help` }, help) : null;
  if (helpEl) addTo(input, "aria-describedby", helpEl.id);
  return h(
    "div",
    { class: "field", "data-field": id },
    h("label", { for: id }, label),
    input,
    helpEl,
    h("p", { class: "field-error", id: `${id}-error`, hidden: true }),
  );
}

// Shows `message` under the control `#id` (in `root`) and marks it invalid.
export function fieldError(root, id, message) {
  const input = root.querySelector(`#${CSS.escape(id)}`);
  const slot = root.querySelector(`#${CSS.escape(id)}-error`);
  if (!input || !slot) return false;
  slot.textContent = message;
  slot.hidden = false;
  input.setAttribute("aria-invalid", "true");
  addTo(input, "aria-describedby", slot.id);
  return true;
}

// Takes every error of `root` away (the values stay as typed).
export function clearErrors(root) {
  for (const slot of root.querySelectorAll(".field-error")) {
    slot.textContent = "";
    slot.hidden = true;
  }
  for (const el of root.querySelectorAll("[aria-invalid]")) {
    el.removeAttribute("aria-invalid");
    for (const id of (el.getAttribute("aria-describedby") || "").split(/\s+/)) {
      if (id.endsWith("-error")) removeFrom(el, "aria-describedby", id);
    }
  }
}

// Shows an API error `message` in `root`: under the field `id` (the one the message names;
// null: none), else in `formError` (a `.field-error` element at the top of the form, with
// `tabindex="-1"`). The invalid field (or the form's error) gets the focus, so a keyboard or
// screen reader user lands on what to fix. Answers whether it went to a field.
export function showError(root, id, message, formError) {
  if (id && fieldError(root, id, message)) {
    root.querySelector(`#${CSS.escape(id)}`).focus();
    return true;
  }
  formError.textContent = message;
  formError.hidden = false;
  formError.focus();
  return false;
}

// Which of `fields` ({id, names}: the words the API's messages use for the field) the API
// `message` is about: the one named earliest in it, a longer name winning at the same place
// (`health_check.port` before `port`). Null: none of them.
export function namedField(message, fields) {
  const text = String(message);
  let best = null;
  for (const f of fields) {
    for (const n of f.names) {
      const re = new RegExp(`(^|[^a-z_.])${n.replace(/[.[\]]/g, "\\$&")}($|[^a-z_])`, "i");
      const at = re.exec(text);
      if (!at) continue;
      if (!best || at.index < best.at || (at.index === best.at && n.length > best.len)) {
        best = { id: f.id, at: at.index, len: n.length };
      }
    }
  }
  return best ? best.id : null;
}
