// apiscout web UI. Plain JavaScript, no build step. Every list is paged,
// filtered and sorted by the server (/api/v1), so a 10,000-endpoint
// inventory costs the browser one page at a time. The DOM is built with
// textContent only: no value from the API is ever parsed as HTML.
"use strict";

const PAGE = 50;
const SEVERITIES = ["critical", "high", "medium", "low", "info"];
const CLASSES = ["documented", "shadow", "zombie", "orphan"];
const SENSITIVE = ["email", "phone", "national_id", "iban", "card", "secret", "private_key", "password", "api_key", "jwt"];
const SEV_COLOR = { critical: "#b3153a", high: "#e0542e", medium: "#e6a019", low: "#4b8fd6", info: "#8a93a5" };
const CLASS_COLOR = { documented: "#2e9e6b", shadow: "#7a3fd1", zombie: "#c2410c", orphan: "#8a93a5" };

let session = { role: "read", open: true, csrf_token: "" };
const main = document.getElementById("main");

// ---- DOM helpers ----

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "width") el.style.width = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

const SVGNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

function render(...kids) {
  main.replaceChildren();
  append(main, kids);
}

function fmtNum(n) { return (n || 0).toLocaleString("en-US"); }
function fmtTime(t) {
  if (!t || t.startsWith("0001")) return "—";
  const d = new Date(t);
  return d.toISOString().replace("T", " ").slice(0, 16) + "Z";
}
// Risk scores come as 0..1 from some analyzers and as open-ended points
// from others: show the number as given (0..1 as percent) and draw the
// bar on a log scale past 100.
function riskValue(x) { x = x || 0; return x <= 1 ? Math.round(x * 100) : Math.round(x); }
function riskWidth(x) { x = x || 0; return x <= 1 ? x * 100 : Math.min(100, 25 * Math.log10(1 + x)); }

function badge(text, cls) { return h("span", { class: "badge " + (cls || "") }, text); }
function methodTag(m) { return h("span", { class: "method " + m }, m); }
function riskBar(r) {
  return h("span", { title: "risk score " + riskValue(r) }, h("span", { class: "risk" }, h("i", { width: riskWidth(r) + "%" })), riskValue(r));
}
function flags(e) {
  return [
    badge(e.classification, e.classification),
    e.unauthenticated ? badge("no auth", "unauth") : null,
    (e.sensitive || []).filter(Boolean).map((x) => badge(x, "sens")),
  ];
}
function epLink(e) { return "#/endpoint/" + e.id; }

// ---- API ----

async function api(path, opts) {
  opts = opts || {};
  const headers = Object.assign({}, opts.headers || {});
  if (opts.method && opts.method !== "GET" && session.csrf_token) headers["X-CSRF-Token"] = session.csrf_token;
  const r = await fetch("/api/v1" + path, { method: opts.method || "GET", headers, body: opts.body, credentials: "same-origin" });
  if (r.status === 401) { location.href = "/login"; throw new Error("not signed in"); }
  const ct = r.headers.get("Content-Type") || "";
  const body = ct.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.error) || r.status + " " + r.statusText);
  return body;
}

function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "" || v === false || (Array.isArray(v) && !v.length)) continue;
    u.set(k, Array.isArray(v) ? v.join(",") : String(v));
  }
  const q = u.toString();
  return q ? "?" + q : "";
}

// ---- routing (hash: #/page/arg?query) ----

function route() {
  const hash = location.hash.slice(1) || "/";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  const page = parts[0] || "overview";
  for (const a of document.querySelectorAll("#nav a")) {
    const p = a.dataset.page;
    a.classList.toggle("active", p === page || (p === "inventory" && page === "endpoint") || (p === "anomalies" && page === "anomaly"));
  }
  const pages = { overview, inventory, endpoint, anomalies, anomaly, diff, compliance };
  const fn = pages[page] || overview;
  render(h("p", { class: "muted" }, "Loading…"));
  fn(params, decodeURIComponent(parts[1] || "")).catch((err) => render(h("p", { class: "error" }, String(err.message || err))));
}

function go(page, params) { location.hash = "#/" + page + qs(params || {}); }

// ---- overview ----

async function overview() {
  const sum = await api("/summary");
  const c = sum.classes || {};
  const stat = (n, label, href, cls) => h("a", { class: "stat " + (cls || ""), href }, h("div", { class: "n" }, fmtNum(n)), h("div", { class: "l" }, label));
  const sev = sum.anomalies.by_severity || {};
  render(
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), h("span", { class: "muted" }, sum.data_time ? "traffic up to " + fmtTime(sum.data_time) : "no traffic yet")),
    h("div", { class: "stats", id: "counts" },
      stat(sum.services, "services", "#/inventory"),
      stat(sum.endpoints, "endpoints", "#/inventory"),
      stat(c.shadow, "shadow", "#/inventory?class=shadow", "shadow"),
      stat(c.zombie, "zombie", "#/inventory?class=zombie", "zombie"),
      stat(c.orphan, "orphan", "#/inventory?class=orphan"),
      stat(sum.unauthenticated, "unauthenticated", "#/inventory?unauthenticated=true", sum.unauthenticated ? "bad" : ""),
      stat(sum.sensitive, "sensitive data", "#/compliance"),
      stat(sum.new_this_week, "new this week", "#/inventory?sort=-first_seen"),
      stat(sum.anomalies.open, "open anomalies", "#/anomalies?state=open", sum.anomalies.open ? "bad" : ""),
    ),
    h("div", { class: "grid cols-2" },
      h("div", { class: "card" }, h("h2", {}, "Endpoints by classification"), stackBar(CLASSES.map((k) => [k, c[k] || 0, CLASS_COLOR[k]]))),
      h("div", { class: "card" }, h("h2", {}, "Anomalies by severity"), stackBar(SEVERITIES.map((k) => [k, sev[k] || 0, SEV_COLOR[k]])))),
    h("div", { class: "grid cols-2" },
      h("div", { class: "card" }, h("h2", {}, "Top risks"), endpointTable(sum.top_risks, { compact: true })),
      h("div", { class: "card" }, h("h2", {}, "New this week"), endpointTable(sum.new_endpoints, { compact: true, firstSeen: true })),
    ),
    h("div", { class: "card section" }, h("h2", {}, "Recent anomalies"), anomalyTable(sum.recent_anomalies)),
  );
}

function stackBar(parts) {
  const total = parts.reduce((a, p) => a + p[1], 0);
  const bar = h("div", { class: "bar" });
  for (const [name, n, color] of parts) {
    if (!n) continue;
    const seg = h("span", { title: name + ": " + n });
    seg.style.width = (100 * n / total) + "%";
    seg.style.background = color;
    bar.append(seg);
  }
  const legend = h("div", { class: "legend" }, parts.map(([name, n, color]) => {
    const i = h("i"); i.style.background = color;
    return h("span", {}, i, name + " " + fmtNum(n));
  }));
  return [total ? bar : h("p", { class: "empty" }, "None."), legend];
}

// ---- inventory ----

async function inventory(p) {
  const q = {
    q: p.q || "", class: p.class ? p.class.split(",") : [], unauthenticated: p.unauthenticated === "true",
    sensitive: p.sensitive || "", service: p.service || "", sort: p.sort || "-risk", offset: +p.offset || 0, limit: PAGE,
  };
  const [page, svcs] = await Promise.all([api("/endpoints" + qs(q)), api("/services")]);
  const set = (patch) => go("inventory", Object.assign({}, q, { offset: 0, limit: undefined }, patch));

  const search = h("input", { type: "search", id: "search", placeholder: "Search path, service or method", value: q.q });
  search.addEventListener("keydown", (e) => { if (e.key === "Enter") set({ q: search.value.trim() }); });
  const chips = CLASSES.map((cl) => {
    const on = q.class.includes(cl);
    const box = h("input", { type: "checkbox", checked: on, "data-class": cl });
    box.addEventListener("change", () => set({ class: on ? q.class.filter((x) => x !== cl) : q.class.concat(cl) }));
    return h("label", { class: "chip" + (on ? " on" : ""), id: "filter-" + cl }, box, cl);
  });
  const unauth = h("input", { type: "checkbox", checked: q.unauthenticated });
  unauth.addEventListener("change", () => set({ unauthenticated: !q.unauthenticated }));
  const sens = h("select", { id: "sensitive" }, h("option", { value: "" }, "any data class"),
    SENSITIVE.map((x) => h("option", { value: x, selected: q.sensitive === x }, x)));
  sens.addEventListener("change", () => set({ sensitive: sens.value }));
  const svc = h("select", { id: "service" }, h("option", { value: "" }, "all services"),
    svcs.items.map((x) => h("option", { value: x.host, selected: q.service === x.host }, x.host)));
  svc.addEventListener("change", () => set({ service: svc.value }));

  render(
    h("div", { class: "page-head" }, h("h1", {}, "Inventory"), h("span", { class: "muted", id: "total" }, fmtNum(page.total) + " endpoints")),
    h("div", { class: "filters" }, search, chips,
      h("label", { class: "chip" + (q.unauthenticated ? " on" : ""), id: "filter-unauthenticated" }, unauth, "unauthenticated"), sens, svc),
    h("div", { class: "card" }, endpointTable(page.items, { sort: q.sort, onSort: (k) => set({ sort: k }) }), pager(page, q.offset, (off) => go("inventory", Object.assign({}, q, { offset: off, limit: undefined })))),
  );
}

function pager(page, offset, to) {
  const end = Math.min(page.total, offset + page.items.length);
  return h("div", { class: "pager" },
    h("span", { class: "muted grow" }, page.total ? `${fmtNum(offset + 1)}–${fmtNum(end)} of ${fmtNum(page.total)}` : ""),
    h("button", { class: "secondary", disabled: offset <= 0, onclick: () => to(Math.max(0, offset - PAGE)) }, "‹ Previous"),
    h("button", { class: "secondary", disabled: end >= page.total, onclick: () => to(offset + PAGE), id: "next" }, "Next ›"));
}

function endpointTable(items, o) {
  o = o || {};
  if (!items || !items.length) return h("p", { class: "empty" }, "No endpoints match.");
  const col = (key, label, cls) => {
    if (!o.onSort) return h("th", { class: cls }, label);
    const cur = (o.sort || "-risk").replace(/^-/, "");
    const desc = (o.sort || "-risk").startsWith("-");
    const th = h("th", { class: "sortable " + (cls || "") + (cur === key ? " sorted" + (desc ? "" : " asc") : "") }, label);
    th.addEventListener("click", () => o.onSort(cur === key && desc ? key : "-" + key));
    return th;
  };
  const head = h("tr", {}, col("risk", "Risk"), col("method", "Method"), o.compact ? null : col("service", "Service"), col("path", "Path"),
    h("th", {}, "Flags"), col("calls", "Calls", "num"), o.firstSeen ? col("first_seen", "First seen") : col("last_seen", "Last seen"));
  const rows = items.map((e) => {
    const tr = h("tr", { class: "row", "data-id": e.id },
      h("td", {}, riskBar(e.risk_score)), h("td", {}, methodTag(e.method)), o.compact ? null : h("td", {}, e.service),
      h("td", { class: "path" }, h("a", { href: epLink(e) }, e.path), o.compact ? h("div", { class: "muted small" }, e.service) : null),
      h("td", {}, flags(e)), h("td", { class: "num" }, fmtNum(e.calls)), h("td", { class: "small" }, fmtTime(o.firstSeen ? e.first_seen : e.last_seen)));
    tr.addEventListener("click", (ev) => { if (ev.target.tagName !== "A") location.hash = epLink(e); });
    return tr;
  });
  return h("table", { class: "endpoints" }, h("thead", {}, head), h("tbody", {}, rows));
}

// ---- endpoint detail ----

async function endpoint(_, id) {
  const [e, st] = await Promise.all([api("/endpoints/" + id), api("/endpoints/" + id + "/stats")]);
  const pts = st.points || [];
  render(
    h("div", { class: "page-head" }, methodTag(e.method), h("h1", { class: "mono" }, e.path), h("span", { class: "muted" }, e.service), h("span", { class: "grow" }),
      h("a", { href: "/api/v1/services/" + encodeURIComponent(e.service) + "/openapi.json", download: "" }, "Download reconstructed OpenAPI")),
    h("div", { class: "grid cols-2" },
      h("div", { class: "card" }, h("h2", {}, "Summary"), h("dl", { class: "kv" },
        h("dt", {}, "Classification"), h("dd", {}, flags(e)),
        h("dt", {}, "Risk"), h("dd", {}, riskBar(e.risk_score)),
        h("dt", {}, "Calls"), h("dd", {}, fmtNum(e.calls)),
        h("dt", {}, "Protocol"), h("dd", {}, e.protocol || "—"),
        h("dt", {}, "First seen"), h("dd", {}, fmtTime(e.first_seen)),
        h("dt", {}, "Last seen"), h("dd", {}, fmtTime(e.last_seen)),
        h("dt", {}, "Authentication"), h("dd", {}, (e.auth || []).length ? e.auth.map((a) => badge(a, a === "none" ? "unauth" : "")) : "—"),
        h("dt", {}, "Sensitive fields"), h("dd", {}, (e.sensitive || []).length ? e.sensitive.map((x) => badge(x, "sens")) : "none seen"),
        h("dt", {}, "Findings"), h("dd", {}, (e.findings || []).length ? h("ul", {}, e.findings.map((f) => h("li", {}, f))) : "—"))),
      h("div", { class: "card" }, h("h2", {}, "Rate (calls per bucket) and errors"), pts.length ? lineChart(pts, [["calls", "#2f6fde", "calls"], ["errors", "#b3153a", "errors"]]) : h("p", { class: "empty" }, "No time series kept for this endpoint.")),
      h("div", { class: "card" }, h("h2", {}, "Latency (ms)"), pts.length ? lineChart(pts, [["p50_ms", "#2e9e6b", "p50"], ["p95_ms", "#e6a019", "p95"], ["p99_ms", "#b3153a", "p99"]]) : h("p", { class: "empty" }, "No latency kept for this endpoint.")),
      h("div", { class: "card" }, h("h2", {}, "Recent anomalies"), anomalyTable(e.anomalies, { compact: true })),
    ),
    h("div", { class: "card section" }, h("h2", {}, "Parameters, schemas and status codes"), detailView(e.detail)),
  );
}

// detailView renders the analyzer's endpoint detail: arrays of objects as
// tables, flat objects as key/value lists, anything else as JSON.
function detailView(d) {
  if (!d || typeof d !== "object" || !Object.keys(d).length) return h("p", { class: "empty" }, "Nothing more is known about this endpoint yet.");
  return Object.entries(d).map(([k, v]) => h("div", { class: "section" }, h("h2", {}, k.replace(/_/g, " ")), valueView(v)));
}

function valueView(v) {
  if (Array.isArray(v) && v.length && v.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
    const cols = [...new Set(v.flatMap((x) => Object.keys(x)))];
    return h("table", {}, h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
      h("tbody", {}, v.map((x) => h("tr", {}, cols.map((c) => h("td", {}, cell(x[c])))))));
  }
  if (v && typeof v === "object" && !Array.isArray(v) && Object.values(v).every((x) => x === null || typeof x !== "object")) {
    return h("dl", { class: "kv" }, Object.entries(v).flatMap(([k, x]) => [h("dt", {}, k), h("dd", {}, cell(x))]));
  }
  if (v !== null && typeof v === "object") return h("pre", {}, JSON.stringify(v, null, 2));
  return h("p", {}, cell(v));
}

function cell(x) {
  if (x === null || x === undefined) return "—";
  if (typeof x === "object") return h("code", {}, JSON.stringify(x));
  return String(x);
}

// lineChart draws series over time as inline SVG polylines.
function lineChart(pts, series) {
  const W = 560, H = 180, L = 40, R = 8, T = 8, B = 22;
  const xs = pts.map((p) => new Date(p.time).getTime());
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || x0 + 1;
  const ymax = Math.max(1, ...series.flatMap(([k]) => pts.map((p) => p[k] || 0)));
  const X = (t) => L + (W - L - R) * (x1 === x0 ? 0.5 : (t - x0) / (x1 - x0));
  const Y = (v) => T + (H - T - B) * (1 - v / ymax);
  const grid = s("g", { class: "grid" });
  for (let i = 0; i <= 4; i++) {
    const v = ymax * i / 4;
    grid.append(s("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v) }), s("text", { x: L - 4, y: Y(v) + 3, "text-anchor": "end" }, fmtShort(v)));
  }
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" }, grid,
    s("text", { x: L, y: H - 6 }, fmtTime(pts[0].time)), s("text", { x: W - R, y: H - 6, "text-anchor": "end" }, fmtTime(pts[pts.length - 1].time)));
  for (const [k, color, label] of series) {
    const d = pts.map((p, i) => `${X(xs[i]).toFixed(1)},${Y(p[k] || 0).toFixed(1)}`).join(" ");
    svg.append(s("polyline", { points: d, fill: "none", stroke: color, "stroke-width": 1.8, "stroke-linejoin": "round" }, s("title", {}, label)));
  }
  const legend = h("div", { class: "legend" }, series.map(([, color, label]) => { const i = h("i"); i.style.background = color; return h("span", {}, i, label); }));
  return [svg, legend];
}

function fmtShort(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return v >= 10 ? Math.round(v) : +v.toFixed(1);
}

// ---- anomalies ----

async function anomalies(p) {
  const q = { severity: p.severity || "", state: p.state || "", type: p.type || "", service: p.service || "", offset: +p.offset || 0, limit: PAGE };
  const [page, all] = await Promise.all([
    api("/anomalies" + qs(q)),
    api("/anomalies" + qs(Object.assign({}, q, { offset: 0, limit: 1000 }))),
  ]);
  const set = (patch) => go("anomalies", Object.assign({}, q, { offset: 0, limit: undefined }, patch));
  const sevSel = h("select", { id: "severity" }, h("option", { value: "" }, "any severity"), SEVERITIES.map((x) => h("option", { value: x, selected: q.severity === x }, x)));
  sevSel.addEventListener("change", () => set({ severity: sevSel.value }));
  const stSel = h("select", { id: "state" }, h("option", { value: "" }, "open and closed"), ["open", "closed"].map((x) => h("option", { value: x, selected: q.state === x }, x)));
  stSel.addEventListener("change", () => set({ state: stSel.value }));
  render(
    h("div", { class: "page-head" }, h("h1", {}, "Anomalies"), h("span", { class: "muted" }, fmtNum(page.total) + " incidents")),
    h("div", { class: "filters" }, sevSel, stSel, q.type ? h("span", { class: "chip on" }, "type: " + q.type, h("a", { href: "#/anomalies" }, " ×")) : null),
    h("div", { class: "card" }, h("h2", {}, "Timeline"), all.items.length ? timeline(all.items) : h("p", { class: "empty" }, "No anomalies.")),
    h("div", { class: "card section" }, anomalyTable(page.items), pager(page, q.offset, (off) => go("anomalies", Object.assign({}, q, { offset: off, limit: undefined })))),
  );
}

// timeline places each incident on a time axis, one lane per severity,
// its length from start to end; a click opens it.
function timeline(items) {
  const W = 1100, lane = 22, L = 70, R = 10, T = 6, B = 22;
  const H = T + lane * SEVERITIES.length + B;
  const ts = items.flatMap((a) => [new Date(a.start).getTime(), new Date(a.end || a.start).getTime()]);
  const t0 = Math.min(...ts), t1 = Math.max(...ts);
  const X = (t) => L + (W - L - R) * (t1 === t0 ? 0.5 : (t - t0) / (t1 - t0));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", id: "timeline" });
  SEVERITIES.forEach((sev, i) => {
    const y = T + i * lane + lane / 2;
    svg.append(s("g", { class: "grid" }, s("line", { x1: L, x2: W - R, y1: y, y2: y })), s("text", { x: L - 6, y: y + 3, "text-anchor": "end" }, sev));
  });
  for (const a of items) {
    const y = T + SEVERITIES.indexOf(a.severity) * lane + lane / 2;
    const xa = X(new Date(a.start).getTime()), xb = Math.max(xa + 8, X(new Date(a.end || a.start).getTime()));
    const g = s("g", { class: "dot", onclick: () => { location.hash = "#/anomaly/" + encodeURIComponent(a.id); } },
      s("title", {}, `${a.type} · ${a.host}${a.path ? " " + a.method + " " + a.path : ""}\n${fmtTime(a.start)}\n${a.summary}`),
      s("rect", { x: xa, y: y - 6, width: xb - xa, height: 12, rx: 6, fill: SEV_COLOR[a.severity] || "#888", "fill-opacity": a.state === "open" ? 0.95 : 0.5 }));
    svg.append(g);
  }
  svg.append(s("text", { x: L, y: H - 6 }, fmtTime(new Date(t0).toISOString())), s("text", { x: W - R, y: H - 6, "text-anchor": "end" }, fmtTime(new Date(t1).toISOString())));
  return svg;
}

function anomalyTable(items, o) {
  o = o || {};
  if (!items || !items.length) return h("p", { class: "empty" }, "No anomalies.");
  const rows = items.map((a) => {
    const href = "#/anomaly/" + encodeURIComponent(a.id);
    const tr = h("tr", { class: "row", "data-id": a.id },
      h("td", {}, badge(a.severity, a.severity)),
      h("td", {}, h("a", { href }, a.type.replace(/_/g, " ")), a.owasp ? h("div", { class: "muted small" }, a.owasp) : null),
      o.compact ? null : h("td", { class: "path" }, a.host, a.path ? h("div", {}, methodTag(a.method), " ", a.path) : null),
      h("td", {}, a.summary), h("td", { class: "small" }, fmtTime(a.start)), h("td", {}, badge(a.state, a.state)));
    tr.addEventListener("click", (ev) => { if (ev.target.tagName !== "A") location.hash = href; });
    return tr;
  });
  return h("table", { class: "anomalies" }, h("thead", {}, h("tr", {}, h("th", {}, "Severity"), h("th", {}, "Type"), o.compact ? null : h("th", {}, "Target"),
    h("th", {}, "Summary"), h("th", {}, "Start"), h("th", {}, "State"))), h("tbody", {}, rows));
}

async function anomaly(_, id) {
  const body = await api("/anomalies/" + encodeURIComponent(id));
  const a = body.anomaly;
  render(
    h("div", { class: "page-head" }, badge(a.severity, a.severity), h("h1", {}, a.type.replace(/_/g, " ")), badge(a.state, a.state), a.owasp ? h("span", { class: "muted" }, "OWASP " + a.owasp) : null),
    h("div", { class: "grid cols-2" },
      h("div", { class: "card", id: "anomaly-detail" }, h("h2", {}, "What happened"), h("p", {}, a.summary), h("dl", { class: "kv" },
        h("dt", {}, "Service"), h("dd", {}, a.host),
        a.path ? [h("dt", {}, "Endpoint"), h("dd", {}, body.endpoint_id ? h("a", { href: "#/endpoint/" + body.endpoint_id }, methodTag(a.method), " ", a.path) : a.path)] : null,
        a.client ? [h("dt", {}, "Client"), h("dd", { class: "mono" }, a.client)] : null,
        h("dt", {}, "From"), h("dd", {}, fmtTime(a.start)),
        h("dt", {}, "To"), h("dd", {}, fmtTime(a.end)),
        a.expected || a.observed ? [h("dt", {}, "Observed / expected"), h("dd", {}, fmtShort(a.observed || 0) + " / " + fmtShort(a.expected || 0))] : null,
        h("dt", {}, "Events folded in"), h("dd", {}, fmtNum(a.count)))),
      h("div", { class: "card" }, h("h2", {}, "Observed against expected"), a.expected || a.observed ? compareBars(a) : h("p", { class: "empty" }, "This detector reports no baseline."))),
    h("div", { class: "card section", id: "evidence" }, h("h2", {}, "Evidence (" + (a.evidence || []).length + " sample transactions)"), evidenceTable(body.evidence, a.evidence || [])),
  );
}

function compareBars(a) {
  const max = Math.max(a.observed || 0, a.expected || 0, 1);
  const W = 520, row = 30;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${row * 2 + 10}`, role: "img" });
  [["expected", a.expected || 0, "#8a93a5"], ["observed", a.observed || 0, SEV_COLOR[a.severity] || "#b3153a"]].forEach(([label, v, color], i) => {
    const y = 4 + i * row;
    svg.append(s("text", { x: 0, y: y + 15 }, label), s("rect", { x: 70, y, width: Math.max(2, (W - 140) * v / max), height: 20, rx: 3, fill: color }),
      s("text", { x: 74 + (W - 140) * v / max, y: y + 15 }, fmtShort(v)));
  });
  return svg;
}

function evidenceTable(samples, ids) {
  if (!samples.length) return ids.length ? h("ul", { class: "mono" }, ids.map((id) => h("li", {}, id))) : h("p", { class: "empty" }, "No samples kept.");
  return h("table", {}, h("thead", {}, h("tr", {}, ["Time", "Client", "Request", "Status", "Latency", "Auth", "Flags"].map((c) => h("th", {}, c)))),
    h("tbody", {}, samples.map((x) => h("tr", {}, h("td", { class: "small" }, fmtTime(x.time)), h("td", { class: "mono" }, x.client),
      h("td", { class: "path" }, methodTag(x.method), " ", x.path), h("td", {}, x.status || "—"), h("td", { class: "num" }, (x.latency_ms || 0).toFixed(1) + " ms"),
      h("td", {}, x.auth || "—"), h("td", {}, (x.flags || []).map((f) => badge(f)))))));
}

// ---- spec diff ----

async function diff(p) {
  const svcs = (await api("/services")).items;
  const svc = p.service || (svcs.find((x) => x.spec) || svcs[0] || {}).host;
  const sel = h("select", { id: "diff-service" }, svcs.map((x) => h("option", { value: x.host, selected: x.host === svc }, x.host + (x.spec ? "  (" + x.spec + ")" : "  (no spec)"))));
  sel.addEventListener("change", () => go("diff", { service: sel.value }));
  if (!svc) { render(h("h1", {}, "Spec diff"), h("p", { class: "empty" }, "No services yet.")); return; }
  const d = await api("/services/" + encodeURIComponent(svc) + "/diff");
  const kinds = ["shadow", "zombie", "orphan", "drift"];
  const upload = session.role === "admin" ? uploadForm(svc) : null;
  // A server without a template editor answers 501: no card then.
  const decisions = await api("/services/" + encodeURIComponent(svc) + "/templates").catch(() => null);
  render(
    h("div", { class: "page-head" }, h("h1", {}, "Spec diff"), sel, h("span", { class: "grow" }),
      h("a", { href: "/api/v1/services/" + encodeURIComponent(svc) + "/openapi.json", download: "" }, "Download reconstructed OpenAPI")),
    h("p", { class: "muted" }, d.spec ? "Traffic compared with " + d.spec + "." : "No spec is bound to this service: every endpoint is shadow. Upload one, or set analyzer.specs."),
    h("div", { class: "stats" }, kinds.map((k) => h("div", { class: "stat " + k }, h("div", { class: "n" }, fmtNum(d.items.filter((i) => i.kind === k).length)), h("div", { class: "l" }, k)))),
    h("div", { class: "card" }, d.items.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Kind", "Severity", "Endpoint", "Where", "Detail"].map((c) => h("th", {}, c)))),
      h("tbody", {}, d.items.map((i) => h("tr", {}, h("td", {}, badge(i.kind, i.kind === "drift" ? "sens" : i.kind)), h("td", {}, badge(i.severity, i.severity)),
        h("td", { class: "path" }, i.method ? methodTag(i.method) : null, " ", i.path || ""), h("td", { class: "mono" }, i.location || ""), h("td", {}, i.detail)))))
      : h("p", { class: "empty" }, "Traffic and spec agree.")),
    decisions ? templatesCard(svc, decisions.items) : null,
    upload,
  );
}

// Template decisions: pin a template, split a value or position out of a
// parameter, merge a position's values into one. Admins make and withdraw
// them here; the inventory regroups at once.
function templatesCard(svc, items) {
  const admin = session.role === "admin";
  const path = "/services/" + encodeURIComponent(svc) + "/templates";
  const msg = h("span", { class: "muted", id: "template-msg" });
  const rows = items.map((d) => h("tr", {},
    h("td", {}, badge(d.action, d.action === "split" ? "zombie" : "shadow")),
    h("td", { class: "path mono" }, d.template),
    h("td", {}, d.service === "*" ? "every service" : d.service),
    h("td", { class: "muted" }, d.source === "config" ? "analyzer.templates" : "API"),
    h("td", {}, admin && d.source === "api" ? h("button", { class: "small", onclick: async () => {
      try {
        await api((d.service === "*" ? "/services/*/templates/" : path + "/") + encodeURIComponent(d.id), { method: "DELETE" });
        route();
      } catch (e) { msg.textContent = "Refused: " + e.message; }
    } }, "Withdraw") : null)));
  let form = null;
  if (admin) {
    const action = h("select", { id: "template-action" }, ["merge", "split", "pin"].map((a) => h("option", { value: a }, a)));
    const tpl = h("input", { type: "text", id: "template-path", placeholder: "/reports/{report}", size: 40 });
    const add = h("button", { id: "template-add", onclick: async () => {
      try {
        await api(path, { method: "POST", body: JSON.stringify({ action: action.value, template: tpl.value.trim() }), headers: { "Content-Type": "application/json" } });
        route();
      } catch (e) { msg.textContent = "Refused: " + e.message; }
    } }, "Add decision");
    form = h("div", { class: "filters" }, action, tpl, add, msg);
  }
  return h("div", { class: "card section", id: "templates" },
    h("h2", {}, "Path templates of " + svc),
    h("p", { class: "muted small" }, "merge /reports/{report}: the values there are one parameter. split /users/me: that value is its own endpoint (split /files/{name}: every value is). pin /users/{userId}: that template, whatever the traffic shows."),
    items.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Action", "Template", "Applies to", "From", ""].map((c) => h("th", {}, c)))), h("tbody", {}, rows))
      : h("p", { class: "empty" }, "No decisions: templates are inferred from the traffic."),
    form);
}

function uploadForm(svc) {
  const file = h("input", { type: "file", accept: ".json,.yaml,.yml", id: "spec-file" });
  const msg = h("span", { class: "muted" });
  const btn = h("button", { onclick: async () => {
    if (!file.files.length) { msg.textContent = "Choose a file first."; return; }
    const text = await file.files[0].text();
    const yaml = !text.trim().startsWith("{");
    try {
      await api("/services/" + encodeURIComponent(svc) + "/spec", { method: "PUT", body: text, headers: { "Content-Type": yaml ? "application/yaml" : "application/json" } });
      msg.textContent = "Accepted: the diff updates as traffic is analyzed.";
    } catch (e) { msg.textContent = "Refused: " + e.message; }
  } }, "Upload spec");
  return h("div", { class: "card section" }, h("h2", {}, "Upload the spec of " + svc + " (admin)"), h("div", { class: "filters" }, file, btn, msg));
}

// ---- compliance ----

async function compliance() {
  const c = await api("/compliance" + qs({ limit: 25 }));
  render(
    h("div", { class: "page-head" }, h("h1", {}, "Compliance"), h("span", { class: "muted" }, "Which endpoints carry regulated data, and which of them take no authentication")),
    h("div", { class: "grid cols-3" }, c.regimes.map((r) => h("div", { class: "card", id: "regime-" + r.id },
      h("h2", {}, r.name),
      h("div", { class: "stats" },
        h("a", { class: "stat", href: "#/inventory" + qs({ sensitive: r.classes.length === 1 ? r.classes[0] : "" }) }, h("div", { class: "n" }, fmtNum(r.endpoints)), h("div", { class: "l" }, "endpoints")),
        h("div", { class: "stat " + (r.unauthenticated ? "bad" : "") }, h("div", { class: "n" }, fmtNum(r.unauthenticated)), h("div", { class: "l" }, "without auth"))),
      h("p", { class: "muted small" }, "Data classes: " + r.classes.join(", ")),
      r.items.length ? h("table", {}, h("tbody", {}, r.items.map((e) => h("tr", { class: "row" },
        h("td", {}, methodTag(e.method)), h("td", { class: "path" }, h("a", { href: epLink(e) }, e.path), h("div", { class: "muted small" }, e.service)),
        h("td", {}, e.unauthenticated ? badge("no auth", "unauth") : null, (e.sensitive || []).filter((x) => r.classes.includes(x)).map((x) => badge(x, "sens")))))))
        : h("p", { class: "empty" }, "None seen.")))),
  );
}

// ---- start ----

async function start() {
  try {
    session = await api("/session");
  } catch (e) { return; }
  const st = document.getElementById("status");
  st.textContent = session.ready ? "up to date" : "reading traffic…";
  st.className = "status " + (session.ready ? "ready" : "reading");
  const out = document.getElementById("logout");
  if (!session.open) {
    out.hidden = false;
    out.addEventListener("click", async () => { await api("/session", { method: "DELETE" }); location.href = "/login"; });
  }
  window.addEventListener("hashchange", route);
  route();
}

start();
