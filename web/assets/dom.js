// Small DOM helpers: elements built from nodes and text (never from markup), and the dashboard's
// ways of showing times, durations and commits.

// h("a", {href: "#/", class: "x", onclick: f}, "text", child): an element. `false`, `null` and
// `undefined` props and children are left out; `true` sets an empty attribute.
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// A path segment of an API URL.
export const enc = encodeURIComponent;

// "12s ago", "5m ago", "3h ago", "2d ago".
export function age(ms, now = Date.now()) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

// A time element that says how long ago `ms` was; `refreshAges` keeps it current.
export function ageEl(ms) {
  return h("time", { datetime: new Date(ms).toISOString(), title: new Date(ms).toLocaleString(), "data-ts": ms }, age(ms));
}

export function refreshAges(root) {
  for (const t of root.querySelectorAll("time[data-ts]")) t.textContent = age(Number(t.dataset.ts));
}

// "850 ms", "4.1 s", "2 min 5 s".
export function duration(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

// How long a deployment took (or has taken so far), from the record's times.
export function deploymentDuration(d, now = Date.now()) {
  const start = d.started_at || d.created_at;
  if (!start) return "";
  const end = d.finished_at || now;
  return duration(Math.max(0, end - start)) + (d.finished_at ? "" : " so far");
}

export const shortSha = (sha) => (sha ? sha.slice(0, 10) : "");

// What a deployment built: its commit (short), an uploaded directory, or nothing (rollbacks and
// the like say so through their kind).
export function source(d) {
  if (d.commit) return shortSha(d.commit);
  if (d.upload) return `upload ${d.upload.sha256.slice(0, 10)}`;
  return "";
}

// A status as a labelled badge (`not_deployed` → "not deployed").
export function badge(status) {
  const s = String(status || "unknown");
  return h("span", { class: `badge s-${s.replace(/[^a-z_]/g, "")}` }, s.replace(/_/g, " "));
}

// Terminal color and control codes (tools print them into build logs) taken out of a line.
// eslint-disable-next-line no-control-regex
export const plain = (line) => line.replace(/\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b[@-_]/g, "");

// Says `text` to a screen reader (the page's polite live region).
export function announce(text) {
  const a = document.getElementById("announce");
  a.textContent = "";
  setTimeout(() => (a.textContent = text), 50);
}

// A modal question in `dialog` (a <dialog> of the page, labelled by #confirm-title and
// described by #confirm-text); resolves true when confirmed (Escape or Cancel: false). Cancel has
// the focus: the safe answer is the default one.
export function confirmIn(dialog, titleText, text, yes) {
  return new Promise((resolve) => {
    const ok = h("button", { type: "button", id: "confirm-yes" }, yes);
    const no = h("button", { type: "button", class: "quiet", id: "confirm-no" }, "Cancel");
    dialog.replaceChildren(
      h("h2", { id: "confirm-title" }, titleText),
      h("p", { id: "confirm-text" }, text),
      h("div", { class: "actions" }, ok, no),
    );
    const done = (v) => {
      dialog.close();
      resolve(v);
    };
    ok.addEventListener("click", () => done(true));
    no.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", () => resolve(false), { once: true });
    dialog.showModal();
    no.focus();
  });
}

// The dialog `confirmIn` asks in.
export function confirmDialog() {
  return h("dialog", { id: "confirm", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" });
}

// A page's line for the outcome of what was done: `show(text, isError)` puts it there, and
// `act(failed, after)` makes `act(what, fn)`, which runs `fn` and shows "<what> failed: <why>"
// when it throws (an error `failed` handles, such as a refused token, is left to it), then
// calls `after` (a 403 taught the token's scope: the buttons follow it). `act` gives null on
// failure.
export function messageArea(id) {
  const el = h("p", { id, role: "status" });
  const show = (text, isError) => {
    el.textContent = text;
    el.className = isError ? "error" : "ok";
  };
  const act = (failed, after) => async (what, fn) => {
    try {
      return await fn();
    } catch (e) {
      if (failed(e)) return null;
      show(`${what} failed: ${e.message}`, true);
      if (after) after();
      return null;
    }
  };
  return { el, show, act };
}

// A table of `rows`: `head` the column titles (the first column's cells are row headers;
// "" is a column without a title, named `blankTitle` for screen readers), `cells(row)` a row's
// cells, `attrs(row)` the row's attributes. On a phone each row stacks, labelled by its titles.
export function table({ id, caption, head, rows, cells, attrs, blankTitle = "Actions" }) {
  return h(
    "table",
    { class: "list", id },
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t || h("span", { class: "visually-hidden" }, blankTitle))))),
    h(
      "tbody",
      {},
      rows.map((r) =>
        h(
          "tr",
          attrs ? attrs(r) : {},
          cells(r).map((c, i) => h(i === 0 ? "th" : "td", { "data-label": head[i], scope: i === 0 ? "row" : null }, c)),
        ),
      ),
    ),
  );
}

// Bytes as "512 B", "3.4 KiB", "12 MiB", "1.5 GiB".
export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n) || 0;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}
