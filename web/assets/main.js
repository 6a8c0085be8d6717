// The dashboard's entry: sign-in (a token typed in, or `/#token=…`, taken out of the address
// bar at once), the header, and the router over `#/…` addresses:
//   #/                          the apps
//   #/apps/NAME                 an app, its Deployments tab
//   #/apps/NAME/deployments/ID  the same with that deployment's log open
//   #/apps/NAME/TAB             an app's other tabs (monitoring, configuration, resources, logs)
//   #/nodes                     the nodes
//   #/new                       the New app form
//   #/tokens                    the API tokens (admin)
//   #/audit                     the audit log (admin)

import { session, signIn, signOut, probeScope, ApiError, API_BASE } from "./api.js";
import { h } from "./dom.js";
import { appsPage } from "./apps.js";
import { appPage, DEFAULT_TAB } from "./app.js";
import { nodesPage } from "./nodes.js";
import { newAppPage } from "./newapp.js";
import { tokensPage } from "./tokens.js";
import { auditPage } from "./audit.js";

const main = document.getElementById("main");
let page = null; // {stop(), app?, select?(id)}

function takeTokenFromAddress() {
  const m = /^#token=([^&]*)/.exec(location.hash);
  if (!m) return;
  let token = m[1];
  try {
    token = decodeURIComponent(token);
  } catch {
    // not percent-encoded after all: taken as it is
  }
  signIn(token);
  // The token leaves the address bar (and the history entry) before anything else runs.
  history.replaceState(null, "", location.pathname + location.search);
}

function header(signedIn) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  document.getElementById("who-scope").textContent = session.scope ? `Token scope: ${session.scope}` : "Signed in";
}

function signInForm(message) {
  stopPage();
  header(false);
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-help" + (message ? " sign-in-error" : ""),
  });
  const form = h(
    "form",
    { class: "card sign-in", id: "sign-in" },
    h("h1", {}, "Sign in"),
    message ? h("p", { class: "error", id: "sign-in-error", role: "alert" }, message) : null,
    h("label", { for: "token" }, "API token"),
    input,
    h(
      "p",
      { class: "muted", id: "token-help" },
      "The token `berth up` prints, or one made with `berth tokens create`. `berth open` prints a link that signs in directly. It is kept in this tab only.",
    ),
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    signIn(input.value);
    start();
  });
  main.replaceChildren(form);
  input.focus();
}

function stopPage() {
  if (page) page.stop();
  page = null;
}

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  document.getElementById("nav-apps").setAttribute("aria-current", parts.length && parts[0] !== "new" ? "false" : "page");
  document.getElementById("nav-nodes").setAttribute("aria-current", parts[0] === "nodes" ? "page" : "false");
  document.getElementById("nav-tokens").setAttribute("aria-current", parts[0] === "tokens" ? "page" : "false");
  document.getElementById("nav-audit").setAttribute("aria-current", parts[0] === "audit" ? "page" : "false");
  if (parts[0] === "nodes") {
    stopPage();
    page = nodesPage(main, failed);
    document.title = "Nodes · Berth";
    return;
  }
  const simple = { new: [newAppPage, "New app"], tokens: [tokensPage, "Tokens"], audit: [auditPage, "Audit log"] }[parts[0]];
  if (simple) {
    stopPage();
    page = simple[0](main, failed);
    document.title = `${simple[1]} · Berth`;
    return;
  }
  if (parts[0] === "apps" && parts[1]) {
    const tab = parts[2] || DEFAULT_TAB;
    const deployment = parts[2] === "deployments" ? parts[3] || null : null;
    if (page && page.app === parts[1]) {
      page.route(tab, deployment);
      return;
    }
    stopPage();
    page = appPage(main, parts[1], tab, deployment, failed);
  } else {
    stopPage();
    page = appsPage(main, failed);
    document.title = "Apps · Berth";
  }
}

// What every page does with an error it cannot show itself: a refused token signs out.
function failed(e) {
  if (e instanceof ApiError && e.status === 401) {
    signOut();
    signInForm(`The API refused this token: ${e.message}.`);
    return true;
  }
  return false;
}

// Why the first call failed, in words; a page served apart from the API names the setting that
// lets its origin in (a browser tells a script nothing more about a refused cross-origin call).
function unreachable(e) {
  if (!(e instanceof ApiError) || e.status !== 0) return `Cannot reach the API: ${e.message}`;
  const text = e.message.charAt(0).toUpperCase() + e.message.slice(1) + ".";
  if (!API_BASE) return text;
  return `${text} Is it running, and does its api.cors_origins list this page's origin, ${location.origin}?`;
}

async function start() {
  if (!session.token) return signInForm();
  try {
    await probeScope();
  } catch (e) {
    if (failed(e)) return;
    main.replaceChildren(h("p", { class: "error", role: "alert" }, unreachable(e)));
    return;
  }
  header(true);
  route();
}

document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  location.hash = "";
  signInForm();
});
window.addEventListener("hashchange", () => {
  if (/^#token=/.test(location.hash)) {
    takeTokenFromAddress();
    start();
  } else if (session.token) {
    route();
  }
});

takeTokenFromAddress();
start();
