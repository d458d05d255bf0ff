// Herald console: live from GET /v1/watch (Server-Sent Events, read with
// fetch so that it can send the token), drain and undrain through the HTTP
// API. Every value from the server is put in the page as text, never as HTML.
"use strict";

const state = {
  services: new Map(), // name -> Map(id -> instance)
  revision: null,
  lastId: "",
  heard: null,
  token: localStorage.getItem("herald-token") || "",
};

const $ = (id) => document.getElementById(id);

function headers(extra) {
  const h = Object.assign({}, extra);
  if (state.token) h["Authorization"] = "Bearer " + state.token;
  return h;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c == null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function showError(msg) {
  const p = $("error");
  p.textContent = msg || "";
  p.hidden = !msg;
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return resp.status + ": " + body.error;
  } catch (_) {
    return resp.status + " " + resp.statusText;
  }
}

// ---- the watch stream ----

function apply(ev) {
  if (ev.kind === "snapshot") state.services = new Map();
  for (const ch of ev.events || []) {
    const inst = ch.instance;
    let svc = state.services.get(inst.service);
    if (ch.op === "remove") {
      if (svc) {
        svc.delete(inst.id);
        if (svc.size === 0) state.services.delete(inst.service);
      }
      continue;
    }
    if (!svc) state.services.set(inst.service, (svc = new Map()));
    svc.set(inst.id, inst);
  }
  state.revision = ev.revision;
}

function heard() {
  state.heard = Date.now();
  tick();
}

async function watch() {
  let delay = 500;
  for (;;) {
    const ctl = new AbortController();
    state.abort = ctl;
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (state.lastId) h["Last-Event-ID"] = state.lastId;
      const resp = await fetch("/v1/watch", { headers: h, signal: ctl.signal, cache: "no-store" });
      if (!resp.ok) {
        showError("watch: " + (await errorText(resp)) + (resp.status === 401 || resp.status === 403 ? " (enter a token that can read every service)" : ""));
        setConn(false);
      } else {
        showError("");
        setConn(true);
        delay = 500;
        await readEvents(resp.body);
      }
    } catch (e) {
      if (e.name !== "AbortError") showError("watch: " + e.message);
    }
    setConn(false);
    if (state.restart) {
      state.restart = false;
      continue;
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

async function readEvents(body) {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let id = "", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("id: ")) id = line.slice(4);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (!data) continue;
      const ev = JSON.parse(data);
      apply(ev);
      if (id) state.lastId = id;
      heard();
      render();
    }
  }
}

function setConn(ok) {
  const c = $("conn");
  c.textContent = ok ? "live" : "reconnecting";
  c.className = "conn " + (ok ? "ok" : "bad");
}

// ---- rendering ----

function statusPill(s) {
  return el("span", { class: "pill st-" + s }, s);
}

function render() {
  $("revision").textContent = state.revision == null ? "-" : state.revision;
  const root = $("services");
  root.replaceChildren();
  const names = [...state.services.keys()].sort();
  if (names.length === 0) {
    root.append(el("p", { class: "empty" }, "No services yet."));
    return;
  }
  for (const name of names) {
    const insts = [...state.services.get(name).values()].sort((a, b) => a.id.localeCompare(b.id));
    const serving = insts.filter((i) => (i.status === "passing" || i.status === "warning") && i.weight > 0).length;
    const rows = insts.map((i) => {
      const draining = i.status === "draining";
      const btn = el("button", { type: "button", "data-service": i.service, "data-id": i.id, onclick: () => setStatus(i, draining ? "undrain" : "drain") }, draining ? "Undrain" : "Drain");
      const check = i.check && i.check.kind !== "none" ? i.check.kind + (i.check.ttl ? " " + i.check.ttl : "") : "none";
      const meta = Object.entries(i.meta || {}).map(([k, v]) => k + "=" + v).join(" ");
      return el("tr", { "data-instance": i.service + "/" + i.id, "data-status": i.status },
        el("td", { "data-label": "Instance" }, i.id),
        el("td", { "data-label": "Address" }, (i.address.includes(":") ? "[" + i.address + "]" : i.address) + ":" + i.port),
        el("td", { "data-label": "Status" }, statusPill(i.status)),
        el("td", { "data-label": "Weight" }, i.weight),
        el("td", { "data-label": "Tags" }, ...(i.tags || []).map((t) => el("span", { class: "tag" }, t))),
        el("td", { "data-label": "Meta", class: "meta" }, meta),
        el("td", { "data-label": "Owner" }, i.node),
        el("td", { "data-label": "Check" }, check),
        el("td", { "data-label": "" }, btn));
    });
    root.append(el("div", { class: "service", "data-service": name },
      el("div", { class: "head" }, el("h3", {}, name), el("span", {}, serving + " of " + insts.length + " serving")),
      el("table", { class: "instances" },
        el("thead", {}, el("tr", {}, ...["Instance", "Address", "Status", "Weight", "Tags", "Meta", "Owner", "Check", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...rows))));
  }
}

function ago(ms) {
  const s = Math.round(ms / 1000);
  if (s < 1) return "just now";
  if (s < 60) return s + "s ago";
  return Math.floor(s / 60) + "m " + (s % 60) + "s ago";
}

function tick() {
  $("heard").textContent = state.heard ? ago(Date.now() - state.heard) + " (" + new Date(state.heard).toLocaleTimeString() + ")" : "never";
}

// ---- actions ----

async function setStatus(inst, action) {
  const path = "/v1/services/" + encodeURIComponent(inst.service) + "/" + encodeURIComponent(inst.id) + "/" + action;
  try {
    const resp = await fetch(path, { method: "POST", headers: headers() });
    if (!resp.ok) showError(action + " " + inst.service + "/" + inst.id + ": " + (await errorText(resp)));
    else showError("");
  } catch (e) {
    showError(action + ": " + e.message);
  }
}

async function members() {
  try {
    const resp = await fetch("/v1/members", { headers: headers(), cache: "no-store" });
    if (!resp.ok) return;
    const body = await resp.json();
    heard();
    $("members").replaceChildren(...body.members.map((m) => el("tr", { "data-member": m.name },
      el("td", { "data-label": "Name" }, m.name),
      el("td", { "data-label": "Address" }, m.address),
      el("td", { "data-label": "Status" }, statusPill(m.status)),
      el("td", { "data-label": "Since" }, m.status_since ? new Date(m.status_since).toLocaleString() : ""))));
  } catch (_) {
    // the watch shows the connection's state
  }
}

$("token").value = state.token;
$("tokenForm").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("token").value.trim();
  if (state.token) localStorage.setItem("herald-token", state.token);
  else localStorage.removeItem("herald-token");
  state.restart = true;
  if (state.abort) state.abort.abort();
  members();
});
setInterval(tick, 1000);
setInterval(members, 5000);
members();
watch();
