// The pycache dashboard: polls /api/dashboard once a second, keeps five minutes of history per
// node in memory and draws it as SVG; the key browser talks to /api/keys. No framework, no
// network access beyond this app (the page's Content-Security-Policy allows nothing else).
"use strict";

const POLL_MS = 1000;
const HISTORY_S = 300; // seconds of history kept and drawn
const SVG = "http://www.w3.org/2000/svg";

// Per-interval rates: name -> counters summed for it (missing counters count as absent).
const OPS = [
  ["get hits", ["get_hits"]],
  ["get misses", ["get_misses"]],
  ["sets", ["cmd_set"]],
  ["deletes", ["delete_hits", "delete_misses"]],
  ["incr/decr", ["incr_hits", "incr_misses", "decr_hits", "decr_misses"]],
  ["cas", ["cas_hits", "cas_misses", "cas_badval"]],
  ["touches", ["cmd_touch"]],
];

const nodes = new Map(); // name -> {el, history: [...], prev: {taken, stats}, last: view}
let access = null;

// -- formatting ----------------------------------------------------------------------------------

function fmtNum(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(digits) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(digits) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(digits) + "k";
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2);
}

function fmtBytes(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  const digits = i === 0 && Number.isInteger(v) ? 0 : Math.abs(v) >= 100 ? 0 : 1;
  return v.toFixed(digits) + " " + units[i];
}

function fmtDuration(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "—";
  if (s < 0) return "never";
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

function fmtPct(v) {
  return v === null || v === undefined || Number.isNaN(v) ? "—" : (100 * v).toFixed(1) + "%";
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function svg(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// -- charts --------------------------------------------------------------------------------------

// A line chart of `series` ([{label, values: [[t, v|null], ...]}]) over the last HISTORY_S
// seconds ending at `now`; `limit` draws a dashed ceiling; `format` labels the y axis.
function drawChart(box, series, now, { format = fmtNum, limit = null, min = null, max = null } = {}) {
  const W = 300, H = 110, L = 50, R = 4, T = 6, B = 14;
  const s = box.querySelector("svg");
  s.replaceChildren();
  let top = max ?? 0;
  if (max === null) {
    for (const one of series) for (const [, v] of one.values) if (v !== null && v > top) top = v;
    if (limit !== null && limit > top) top = limit;
    top = niceCeil(top || 1);
  }
  const bottom = min ?? 0;
  // The window: the history the page has, at least 30 s and at most HISTORY_S (a page just
  // opened spreads its first seconds over the width instead of a sliver at the right).
  let earliest = now;
  for (const one of series) if (one.values.length && one.values[0][0] < earliest) earliest = one.values[0][0];
  const span = Math.min(HISTORY_S, Math.max(30, now - earliest));
  const x = (t) => L + ((t - (now - span)) / span) * (W - L - R);
  const y = (v) => T + (1 - (v - bottom) / (top - bottom || 1)) * (H - T - B);
  for (let i = 0; i <= 2; i++) {
    const v = bottom + ((top - bottom) * i) / 2;
    s.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const label = svg("text", { class: "axis", x: L - 3, y: y(v) + 3, "text-anchor": "end" });
    label.textContent = format(v);
    s.append(label);
  }
  for (const [t, text] of [[now - span, "-" + fmtDuration(span)], [now, "now"]]) {
    const label = svg("text", { class: "axis", x: x(t), y: H - 2, "text-anchor": t === now ? "end" : "start" });
    label.textContent = text;
    s.append(label);
  }
  if (limit !== null) s.append(svg("line", { class: "limit", x1: L, x2: W - R, y1: y(limit), y2: y(limit) }));
  series.forEach((one, i) => {
    let d = "", pen = false;
    for (const [t, v] of one.values) {
      if (t < now - span) continue;
      if (v === null) { pen = false; continue; }
      d += (pen ? "L" : "M") + x(t).toFixed(1) + " " + y(Math.min(v, top)).toFixed(1);
      pen = true;
    }
    if (d) s.append(svg("path", { class: `line s${i + 1}`, d, "data-series": one.label }));
  });
  // What the last point of each series is, for the legend (and for tests: data-last).
  const lastValues = series.map((one) => {
    for (let i = one.values.length - 1; i >= 0; i--) if (one.values[i][1] !== null) return one.values[i][1];
    return null;
  });
  s.setAttribute("data-last", String(lastValues.reduce((a, v) => a + (v || 0), 0)));
  s.setAttribute("viewBox", `0 0 ${W} ${H}`);
  s.setAttribute("preserveAspectRatio", "none");
  const legend = box.querySelector(".legend");
  legend.replaceChildren(
    ...series.map((one, i) => el("span", {}, el("i", { class: `s${i + 1}` }), `${one.label} ${format(lastValues[i])}`)),
  );
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function chartBox(title, name) {
  return el("div", { class: "chart", "data-chart": name },
    el("h3", { text: title }), svg("svg", { role: "img", "aria-label": title }), el("div", { class: "legend" }));
}

// -- nodes ---------------------------------------------------------------------------------------

function nodeCard(name) {
  const card = el("article", { class: "node", "data-node": name },
    el("h2", {}, el("span", { class: "name", text: name }), el("span", { class: "badge", text: "…" })),
    el("p", { class: "ident" }),
    el("p", { class: "error", hidden: "" }),
    el("dl", { class: "facts" }),
    el("div", { class: "charts" },
      chartBox("Requests / s", "ops"), chartBox("Hit ratio", "hits"), chartBox("Memory", "memory"),
      chartBox("Evictions and reclaims / s", "evictions"), chartBox("Network / s", "network"),
      chartBox("Items and connections", "counts")),
    el("details", { class: "slabs" }, el("summary", { text: "Size classes" }),
      el("div", { class: "scroll" }, el("table", { class: "table" }))),
  );
  document.getElementById("nodes").append(card);
  return card;
}

function sum(stats, names) {
  let total = 0, any = false;
  for (const n of names) if (typeof stats[n] === "number") { total += stats[n]; any = true; }
  return any ? total : null;
}

// Append one history point per node from a new round: rates from the counters' deltas.
function record(node, view, taken) {
  const h = node.history;
  const point = { t: taken, up: view.up };
  if (view.up) {
    const s = view.stats, prev = node.prev;
    point.bytes = s.bytes ?? null;
    point.limit = s.limit_maxbytes ?? null;
    point.items = s.curr_items ?? null;
    point.conns = s.curr_connections ?? null;
    if (prev && taken > prev.taken && (s.uptime ?? 0) >= (prev.stats.uptime ?? 0)) {
      const dt = taken - prev.taken;
      const rate = (names) => {
        const a = sum(s, names), b = sum(prev.stats, names);
        return a === null || b === null ? null : Math.max(0, (a - b) / dt);
      };
      point.ops = OPS.map(([, names]) => rate(names));
      const hits = rate(["get_hits"]), misses = rate(["get_misses"]);
      point.ratio = hits !== null && misses !== null && hits + misses > 0 ? hits / (hits + misses) : null;
      point.evicted = rate(["evictions"]);
      point.reclaimed = rate(["reclaimed"]);
      point.read = rate(["bytes_read"]);
      point.written = rate(["bytes_written"]);
    }
    node.prev = { taken, stats: s };
  }
  h.push(point);
  while (h.length && h[0].t < taken - HISTORY_S - 5) h.shift();
}

function pick(history, f) {
  return history.map((p) => [p.t, p.up ? (f(p) ?? null) : null]);
}

function facts(card, view) {
  const s = view.stats || {};
  const getRatio = s.get_hits !== undefined && s.cmd_get ? s.get_hits / s.cmd_get : null;
  const rows = [
    ["Version", view.version ?? "—"], ["Backend", view.backend ?? "—"], ["Threads", fmtNum(view.threads)],
    ["Uptime", fmtDuration(s.uptime)], ["Items", fmtNum(s.curr_items)],
    ["Memory", `${fmtBytes(s.bytes)} / ${fmtBytes(s.limit_maxbytes)}`],
    ["Hit ratio (all time)", fmtPct(getRatio)], ["Connections", fmtNum(s.curr_connections)],
    ["Evictions", fmtNum(s.evictions)], ["Reclaimed", fmtNum(s.reclaimed)],
    ["Bytes in", fmtBytes(s.bytes_read)], ["Bytes out", fmtBytes(s.bytes_written)],
  ];
  card.querySelector(".facts").replaceChildren(
    ...rows.map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", { text: v }))),
  );
}

function slabTable(card, view) {
  const table = card.querySelector(".slabs table");
  const classes = view.classes || [];
  card.querySelector(".slabs summary").textContent = `Size classes (${classes.length})`;
  const head = el("tr", {}, ...["Class", "Chunk", "Items", "Chunks used", "Pages", "Requested", "Oldest", "Evicted", "Hits", "Sets"]
    .map((t) => el("th", { text: t })));
  const rows = classes.map((c) => {
    const used = el("progress", { max: String(c.total_chunks || 1), value: String(c.used_chunks || 0) });
    return el("tr", {},
      el("td", { text: String(c.id) }), el("td", { text: fmtBytes(c.chunk_size) }), el("td", { text: fmtNum(c.number ?? 0) }),
      el("td", {}, used, ` ${fmtNum(c.used_chunks)}/${fmtNum(c.total_chunks)}`), el("td", { text: fmtNum(c.total_pages) }),
      el("td", { text: fmtBytes(c.mem_requested) }), el("td", { text: fmtDuration(c.age) }),
      el("td", { text: fmtNum(c.evicted ?? 0) }), el("td", { text: fmtNum(c.get_hits) }), el("td", { text: fmtNum(c.cmd_set) }));
  });
  const body = rows.length ? rows : [el("tr", {}, el("td", { colspan: "10", text: "no items stored yet" }))];
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
}

function drawNode(node, now) {
  const card = node.el, view = node.last, h = node.history;
  card.classList.toggle("down", !view.up);
  card.querySelector(".badge").textContent = view.up ? "up" : "down";
  card.querySelector(".ident").textContent = view.up
    ? `${view.backend ? view.backend + " · " : ""}version ${view.version ?? "?"} · ${view.threads ?? "?"} threads`
    : "not answering";
  const err = card.querySelector(".error");
  err.hidden = view.up;
  err.textContent = view.up ? "" : view.error || "no answer";
  if (view.up) {
    facts(card, view);
    slabTable(card, view);
  }
  const c = (name) => card.querySelector(`[data-chart="${name}"]`);
  drawChart(c("ops"), OPS.map(([label], i) => ({ label, values: pick(h, (p) => p.ops && p.ops[i]) })), now);
  drawChart(c("hits"), [{ label: "hit ratio", values: pick(h, (p) => p.ratio) }], now, { format: fmtPct, min: 0, max: 1 });
  const limit = view.up ? view.stats.limit_maxbytes ?? null : null;
  drawChart(c("memory"), [{ label: "used", values: pick(h, (p) => p.bytes) }], now, { format: fmtBytes, limit });
  drawChart(c("evictions"), [
    { label: "evictions", values: pick(h, (p) => p.evicted) },
    { label: "reclaims", values: pick(h, (p) => p.reclaimed) },
  ], now);
  drawChart(c("network"), [
    { label: "in", values: pick(h, (p) => p.read) },
    { label: "out", values: pick(h, (p) => p.written) },
  ], now, { format: fmtBytes });
  drawChart(c("counts"), [
    { label: "items", values: pick(h, (p) => p.items) },
    { label: "connections", values: pick(h, (p) => p.conns) },
  ], now);
}

function drawSummary(views) {
  const up = views.filter((v) => v.up);
  let ops = 0, items = 0, bytes = 0, limit = 0, hits = 0, gets = 0;
  for (const v of views) {
    const node = nodes.get(v.name), last = node.history[node.history.length - 1];
    if (v.up) {
      items += v.stats.curr_items || 0; bytes += v.stats.bytes || 0; limit += v.stats.limit_maxbytes || 0;
      hits += v.stats.get_hits || 0; gets += v.stats.cmd_get || 0;
    }
    if (last && last.ops) ops += last.ops.reduce((a, x) => a + (x || 0), 0);
  }
  const tiles = [
    ["Nodes up", `${up.length} / ${views.length}`], ["Requests / s", fmtNum(ops)], ["Items", fmtNum(items)],
    ["Memory", `${fmtBytes(bytes)} / ${fmtBytes(limit)}`], ["Hit ratio", fmtPct(gets ? hits / gets : null)],
  ];
  document.getElementById("summary").replaceChildren(
    ...tiles.map(([k, v]) => el("div", { class: "tile" }, el("div", { class: "v", text: v }), el("div", { class: "k", text: k }))),
  );
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/api/dashboard", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const data = await r.json();
    for (const view of data.nodes) {
      let node = nodes.get(view.name);
      if (!node) {
        node = { el: nodeCard(view.name), history: [], prev: null, last: view };
        nodes.set(view.name, node);
      }
      node.last = view;
      const lastT = node.history.length ? node.history[node.history.length - 1].t : 0;
      if (data.taken > lastT) record(node, view, data.taken);
    }
    for (const node of nodes.values()) drawNode(node, data.taken);
    drawSummary(data.nodes);
    const down = data.nodes.filter((v) => !v.up).length;
    status.textContent = down ? `${down} of ${data.nodes.length} nodes down` : `live · ${new Date(data.taken * 1000).toLocaleTimeString()}`;
    status.classList.toggle("bad", down > 0);
    if (access === null) setAccess(data.access, data.nodes);
  } catch (e) {
    status.textContent = `cannot reach the app (${e.message}); retrying`;
    status.classList.add("bad");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

// -- key browser ---------------------------------------------------------------------------------

const browse = { server: null, prefix: "", cursor: 0, selected: null };

function setAccess(a, views) {
  access = a;
  const off = document.getElementById("keys-off");
  if (!a.browser) {
    document.getElementById("keys-on").hidden = true;
    off.hidden = false;
    off.textContent = a.reason || "The key browser is off.";
    return;
  }
  const select = document.getElementById("search-node");
  select.replaceChildren(...views.map((v) => el("option", { value: v.name, text: v.name })));
}

function b64(text) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

async function api(method, url) {
  const r = await fetch(url, { method, cache: "no-store" });
  const body = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw new Error((body && (body.description || body.title)) || `HTTP ${r.status}`);
  return body;
}

async function search(more) {
  const note = document.getElementById("search-status");
  if (!more) {
    browse.server = document.getElementById("search-node").value;
    browse.prefix = document.getElementById("search-prefix").value;
    browse.cursor = 0;
    document.querySelector("#key-table tbody").replaceChildren();
  }
  const limit = document.getElementById("search-limit").value || "50";
  const q = new URLSearchParams({ server: browse.server, prefix: browse.prefix, cursor: String(browse.cursor), limit });
  note.textContent = "searching…";
  try {
    const page = await api("GET", `/api/keys?${q}`);
    const now = Date.now() / 1000;
    const body = document.querySelector("#key-table tbody");
    for (const k of page.keys) {
      const row = el("tr", { class: "pick", "data-key": k.key_b64 },
        el("td", { class: "key", text: k.key ?? `(binary) ${k.key_url}` }), el("td", { text: fmtBytes(k.size) }),
        el("td", { text: k.exp === -1 ? "never" : fmtDuration(k.exp - now) }),
        el("td", { text: k.la ? fmtDuration(now - k.la) + " ago" : "—" }),
        el("td", { text: String(k.cls ?? "—") }), el("td", { text: k.fetched ? "yes" : "no" }));
      row.addEventListener("click", () => showKey(k, row));
      body.append(row);
    }
    browse.cursor = page.cursor;
    const why = { page: "a full page", scan_limit: `the scan limit (${page.bounds.scan} dump lines)`, time_limit: `the time limit (${page.bounds.seconds} s)` };
    const found = body.children.length;
    note.textContent = page.complete
      ? `${found} key${found === 1 ? "" : "s"} found; the whole dump was read (${page.cursor} items).`
      : `${found} found so far; stopped at ${why[page.stopped] || page.stopped} after ${page.cursor} dump lines.`;
    document.getElementById("search-more").hidden = page.complete || page.stopped === "scan_limit";
  } catch (e) {
    note.textContent = `search failed: ${e.message}`;
  }
}

function renderValue(bytes, view) {
  if (view === "hex") {
    const lines = [];
    for (let i = 0; i < bytes.length; i += 16) {
      const chunk = Array.from(bytes.slice(i, i + 16));
      const hex = chunk.map((b) => b.toString(16).padStart(2, "0")).join(" ");
      const text = chunk.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
      lines.push(`${i.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${text}`);
    }
    return lines.join("\n");
  }
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  if (view === "json") {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return `(not JSON)\n${text}`; }
  }
  return text;
}

async function showKey(k, row) {
  document.querySelectorAll("#key-table tr.sel").forEach((r) => r.classList.remove("sel"));
  row.classList.add("sel");
  const detail = document.getElementById("detail");
  const q = new URLSearchParams({ server: browse.server, key: k.key_b64 });
  try {
    const v = await api("GET", `/api/keys/value?${q}`);
    const bytes = Uint8Array.from(atob(v.value_b64), (c) => c.charCodeAt(0));
    browse.selected = { key: k, row, bytes };
    document.getElementById("detail-key").textContent = k.key ?? k.key_url;
    const meta = [
      ["Node", v.server], ["Size", `${fmtBytes(v.size)}${v.truncated ? " (first 64 KiB shown)" : ""}`],
      ["TTL", v.ttl === -1 ? "never expires" : fmtDuration(v.ttl)], ["Flags", String(v.flags ?? "—")],
      ["CAS", String(v.cas ?? "—")], ["Last access", v.last_access === null ? "—" : fmtDuration(v.last_access) + " ago"],
      ["Fetched before", v.fetched_before === null ? "—" : v.fetched_before ? "yes" : "no"],
    ];
    document.getElementById("detail-meta").replaceChildren(
      ...meta.map(([a, b]) => el("div", {}, el("dt", { text: a }), el("dd", { text: b }))),
    );
    const guess = (() => { try { JSON.parse(new TextDecoder().decode(bytes)); return "json"; } catch { return "text"; } })();
    document.getElementById("detail-view").value = guess;
    document.getElementById("detail-value").textContent = renderValue(bytes, guess);
    detail.hidden = false;
    if (k.key !== null) {
      document.getElementById("set-key").value = k.key;
      document.getElementById("set-value").value = new TextDecoder().decode(bytes);
    }
  } catch (e) {
    document.getElementById("search-status").textContent = `cannot read that key: ${e.message}`;
  }
}

async function deleteKey() {
  const sel = browse.selected;
  if (!sel) return;
  const q = new URLSearchParams({ server: browse.server, key: sel.key.key_b64 });
  try {
    await api("DELETE", `/api/keys/value?${q}`);
    sel.row.remove();
    document.getElementById("detail").hidden = true;
    document.getElementById("search-status").textContent = `deleted ${sel.key.key ?? sel.key.key_url}`;
    browse.selected = null;
  } catch (e) {
    document.getElementById("search-status").textContent = `delete failed: ${e.message}`;
  }
}

async function touchKey() {
  const sel = browse.selected;
  if (!sel) return;
  const ttl = document.getElementById("detail-ttl").value || "0";
  const q = new URLSearchParams({ server: browse.server, key: sel.key.key_b64, ttl });
  try {
    await api("POST", `/api/keys/touch?${q}`);
    await showKey(sel.key, sel.row);
  } catch (e) {
    document.getElementById("search-status").textContent = `touch failed: ${e.message}`;
  }
}

async function setKey(ev) {
  ev.preventDefault();
  const key = document.getElementById("set-key").value;
  const ttl = document.getElementById("set-ttl").value || "0";
  const status = document.getElementById("set-status");
  try {
    const r = await fetch(`/api/storage/${encodeURIComponent(key)}?ttl=${encodeURIComponent(ttl)}`, {
      method: "PUT", headers: { "Content-Type": "text/plain; charset=utf-8" }, body: document.getElementById("set-value").value,
    });
    if (!r.ok) {
      const body = await r.json().catch(() => null);
      throw new Error((body && body.description) || `HTTP ${r.status}`);
    }
    status.textContent = `stored ${key}`;
  } catch (e) {
    status.textContent = `not stored: ${e.message}`;
  }
}

document.getElementById("search").addEventListener("submit", (ev) => { ev.preventDefault(); search(false); });
document.getElementById("search-more").addEventListener("click", () => search(true));
document.getElementById("detail-delete").addEventListener("click", deleteKey);
document.getElementById("detail-touch").addEventListener("click", touchKey);
document.getElementById("detail-view").addEventListener("change", (ev) => {
  if (browse.selected) document.getElementById("detail-value").textContent = renderValue(browse.selected.bytes, ev.target.value);
});
document.getElementById("set").addEventListener("submit", setKey);
poll();
