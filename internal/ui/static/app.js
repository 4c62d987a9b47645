// proxyctl live traffic UI: plain JavaScript, no framework, no build step.
// Talks only to the admin API it was served from.
"use strict";

(() => {
  const TOKEN_KEY = "proxyctl-admin-token";
  const ROW_H = 24; // px, matches --row in app.css
  const OVERSCAN = 10;
  const $ = (id) => document.getElementById(id);

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    prompted: false,
    session: "",
    ws: null,
    wsRetry: 0,
    rows: [], // every traffic item of the session, oldest first
    seen: new Set(), // item ids in rows
    view: [], // rows that pass the filter
    selected: null, // the item shown in the detail pane
    filter: { text: "", method: "", status: "" },
    renderQueued: false,
    followPending: false,
  };

  // ---- API --------------------------------------------------------------

  class APIError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function askToken() {
    const t = window.prompt("This proxyctl admin API needs its admin token (--admin-token):", "");
    if (t) {
      state.token = t.trim();
      sessionStorage.setItem(TOKEN_KEY, state.token);
      return true;
    }
    return false;
  }

  async function api(method, path, body) {
    for (let attempt = 0; ; attempt++) {
      const headers = {};
      if (state.token) headers.Authorization = "Bearer " + state.token;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (resp.status === 401 && attempt === 0 && !state.prompted) {
        state.prompted = true; // prompt once; the header button asks again
        if (askToken()) continue;
      }
      if (resp.status === 401) {
        $("token-btn").hidden = false;
        setStatus("admin token required");
      }
      const text = await resp.text();
      let data = null;
      try {
        data = text ? JSON.parse(text) : null;
      } catch {
        data = null;
      }
      if (!resp.ok) throw new APIError(resp.status, (data && data.error) || resp.statusText);
      if (resp.status !== 401) $("token-btn").hidden = true;
      return data;
    }
  }

  function setStatus(msg) {
    $("status").textContent = msg || "";
  }

  // ---- sessions ---------------------------------------------------------

  function age(iso) {
    const t = Date.parse(iso);
    if (!t) return "";
    let s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    s = Math.floor(s / 60);
    if (s < 1440) return Math.floor(s / 60) + "h" + String(s % 60).padStart(2, "0") + "m";
    return Math.floor(s / 1440) + "d";
  }

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }

  async function loadSessions() {
    let items = [];
    try {
      let next = "";
      do {
        const page = await api("GET", "/api/sessions?limit=1000" + (next ? "&since=" + encodeURIComponent(next) : ""));
        items = items.concat(page.items || []);
        next = page.next;
      } while (next && items.length < 5000);
    } catch (e) {
      if (e.status !== 401) setStatus("sessions: " + e.message);
      return;
    }
    if ($("status").textContent.startsWith("sessions:")) setStatus("");
    items.sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
    const tbody = $("sessions").tBodies[0];
    tbody.replaceChildren(
      ...items.map((s) => {
        const close = el("button", { type: "button", class: "danger", title: "Close session" }, "close");
        const st = String(s.state || "").toLowerCase();
        close.disabled = st !== "active";
        close.addEventListener("click", async (ev) => {
          ev.stopPropagation();
          try {
            await api("DELETE", "/api/sessions/" + encodeURIComponent(s.id));
          } catch (e) {
            setStatus("close: " + e.message);
          }
          loadSessions();
        });
        const tr = el(
          "tr",
          { "data-session": s.id, class: s.id === state.session ? "selected" : "" },
          el("td", { class: "id", title: s.id }, s.id),
          el("td", { class: "state-" + st }, st),
          el("td", { class: "num", title: "requests captured by this instance" }, s.traffic == null ? "" : String(s.traffic)),
          el("td", {}, age(s.createdAt)),
          el("td", {}, close),
        );
        tr.addEventListener("click", () => selectSession(s.id));
        return tr;
      }),
    );
    $("sessions-empty").hidden = items.length > 0;
  }

  // ---- traffic ----------------------------------------------------------

  function selectSession(id) {
    if (state.ws) {
      state.ws.onclose = null;
      state.ws.close();
      state.ws = null;
    }
    setLive(false);
    state.session = id;
    state.rows = [];
    state.seen = new Set();
    state.view = [];
    state.selected = null;
    state.wsRetry = 0;
    for (const tr of $("sessions").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.session === id);
    $("session-title").textContent = id;
    $("har").disabled = false;
    $("grid").scrollTop = 0;
    showDetail(null);
    render();
    connect(id);
    loadHistory(id);
    loadStubs();
  }

  async function loadHistory(id) {
    let next = "";
    try {
      do {
        const page = await api(
          "GET",
          "/api/sessions/" + encodeURIComponent(id) + "/traffic?limit=1000" + (next ? "&since=" + encodeURIComponent(next) : ""),
        );
        if (state.session !== id) return;
        addItems(page.items || []);
        next = page.next;
      } while (next);
    } catch (e) {
      if (state.session === id && e.status !== 401) setStatus("traffic: " + e.message);
    }
  }

  function connect(id) {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    let url = proto + location.host + "/api/ws?topic=" + encodeURIComponent("session-" + id + "-traffic");
    if (state.token) url += "&access_token=" + encodeURIComponent(state.token);
    const ws = new WebSocket(url);
    state.ws = ws;
    ws.onopen = () => {
      state.wsRetry = 0;
      setLive(true);
      setStatus("");
    };
    ws.onmessage = (ev) => {
      let item;
      try {
        item = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (state.session === id) addItems([item]);
    };
    ws.onclose = () => {
      if (state.ws !== ws || state.session !== id) return;
      state.ws = null;
      setLive(false);
      setStatus("live stream disconnected, retrying…");
      const delay = Math.min(10000, 500 * 2 ** state.wsRetry++);
      setTimeout(() => {
        if (state.session === id && !state.ws) {
          connect(id);
          loadHistory(id); // catch up on what the gap missed (deduplicated by id)
        }
      }, delay);
    };
  }

  function setLive(on) {
    $("grid").dataset.live = on ? "1" : "0";
    $("live").textContent = on ? "● live" : "○ offline";
    $("live").className = on ? "live on" : "live";
  }

  function addItems(items) {
    const fresh = [];
    let outOfOrder = false;
    let last = state.rows.length ? state.rows[state.rows.length - 1].timestamp : -Infinity;
    for (const it of items) {
      if (!it || !it.id || state.seen.has(it.id)) continue;
      state.seen.add(it.id);
      if (it.timestamp < last) outOfOrder = true;
      last = Math.max(last, it.timestamp);
      state.rows.push(it);
      fresh.push(it);
    }
    if (!fresh.length) return;
    // The sessions list refreshes every few seconds; keep the selected
    // session's count in step with what arrives live meanwhile.
    const row = $("sessions").querySelector('tr[data-session="' + CSS.escape(state.session) + '"]');
    const cell = row && row.cells[2];
    if (cell && Number(cell.textContent || 0) < state.rows.length) cell.textContent = String(state.rows.length);
    if (outOfOrder) {
      state.rows.sort((a, b) => a.timestamp - b.timestamp);
      applyFilter();
    } else {
      for (const it of fresh) if (matches(it)) state.view.push(it);
    }
    scheduleRender(true);
  }

  function statusClass(it) {
    if (it.error) return "serr";
    return it.status ? "s" + String(it.status)[0] : "";
  }

  function matches(it) {
    const f = state.filter;
    if (f.method && it.method !== f.method) return false;
    if (f.status) {
      if (f.status === "err") {
        if (!it.error && !(it.status >= 500)) return false;
      } else if (f.status === "stub") {
        if (!it.stubbed) return false;
      } else if (String(it.status || "")[0] !== f.status) return false;
    }
    if (f.text) {
      const hay = (it.method + " " + (it.path || it.direction || "") + " " + (it.status || "") + " " + (it.error || "")).toLowerCase();
      if (!hay.includes(f.text)) return false;
    }
    return true;
  }

  function applyFilter() {
    state.view = state.rows.filter(matches);
  }

  function scheduleRender(follow) {
    state.followPending = state.followPending || follow;
    if (state.renderQueued) return;
    state.renderQueued = true;
    requestAnimationFrame(() => {
      state.renderQueued = false;
      const f = state.followPending;
      state.followPending = false;
      render(f);
    });
  }

  function fmtTime(us) {
    const d = new Date(us / 1000);
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  function fmtSize(n) {
    if (n === undefined || n === null) return "";
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  function fmtDur(ms) {
    if (typeof ms !== "number") return "";
    return ms < 10 ? ms.toFixed(2) + " ms" : Math.round(ms) + " ms";
  }

  // Virtualized table: a spacer as tall as every row keeps the scroll bar
  // honest; only the rows in the visible window (plus a few) are in the DOM.
  function render(follow) {
    const grid = $("grid");
    const n = state.view.length;
    $("grid-spacer").style.height = n * ROW_H + "px";
    if (follow && $("follow").checked) grid.scrollTop = Math.max(0, n * ROW_H - grid.clientHeight);
    const first = Math.max(0, Math.floor(grid.scrollTop / ROW_H) - OVERSCAN);
    const last = Math.min(n, Math.ceil((grid.scrollTop + grid.clientHeight) / ROW_H) + OVERSCAN);
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) {
      const it = state.view[i];
      const row = el(
        "div",
        { class: "grid-row" + (it === state.selected ? " selected" : ""), "data-id": it.id, role: "row" },
        el("span", { class: "c-time" }, fmtTime(it.timestamp)),
        el("span", { class: "c-method" }, it.method || ""),
        el("span", { class: "c-path", title: it.path || "" }, it.path || it.direction || ""),
        el("span", { class: "c-status " + statusClass(it) }, it.error ? "ERR" : String(it.status || "")),
        el("span", { class: "c-dur" }, fmtDur(it.duration)),
        el("span", { class: "c-size" }, fmtSize(it.responseBody && it.responseBody.size)),
        el("span", { class: "c-stub" + (it.stubbed ? " stubbed" : "") }, it.stubbed ? "stub" : ""),
      );
      row.dataset.index = String(i);
      frag.append(row);
    }
    const rows = $("grid-rows");
    rows.style.transform = "translateY(" + first * ROW_H + "px)";
    rows.replaceChildren(frag);
    const total = state.rows.length;
    $("count").textContent = state.session ? (n === total ? total + " requests" : n + " of " + total + " requests") : "";
  }

  // ---- detail -----------------------------------------------------------

  function headersTable(h) {
    const names = Object.keys(h || {}).sort();
    if (!names.length) return el("p", { class: "muted" }, "none");
    const t = el("table");
    for (const k of names) for (const v of h[k]) t.append(el("tr", {}, el("td", {}, k), el("td", {}, v)));
    return t;
  }

  function b64bytes(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function hexPreview(bytes, max) {
    const lines = [];
    const n = Math.min(bytes.length, max);
    for (let off = 0; off < n; off += 16) {
      const chunk = bytes.subarray(off, Math.min(off + 16, n));
      const hex = Array.from(chunk, (b) => b.toString(16).padStart(2, "0")).join(" ");
      const ascii = Array.from(chunk, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
      lines.push(off.toString(16).padStart(6, "0") + "  " + hex.padEnd(48) + "  " + ascii);
    }
    return lines.join("\n");
  }

  function bodyView(b) {
    const wrap = el("div", { class: "body-wrap" });
    if (!b || (b.text == null && b.base64 == null) || (b.text === "" && !b.size)) {
      wrap.append(el("p", { class: "muted" }, b && b.size ? fmtSize(b.size) + " (not captured)" : "empty"));
      return wrap;
    }
    if (b.truncated) {
      wrap.append(el("p", { class: "note" }, "truncated: captured part of " + b.size + " bytes"));
    }
    if (b.text != null) {
      let text = b.text;
      try {
        const t = text.trim();
        if (t && (t[0] === "{" || t[0] === "[")) text = JSON.stringify(JSON.parse(t), null, 2);
      } catch {
        // not JSON (or truncated JSON): show as is
      }
      wrap.append(el("pre", { class: "body" }, text));
    } else {
      let bytes;
      try {
        bytes = b64bytes(b.base64);
      } catch {
        bytes = new Uint8Array();
      }
      wrap.append(el("p", { class: "muted" }, "binary, " + bytes.length + " bytes captured" + (b.size ? ", " + b.size + " in total" : "")));
      wrap.append(el("pre", { class: "body hex" }, hexPreview(bytes, 512) + (bytes.length > 512 ? "\n…" : "")));
    }
    return wrap;
  }

  function showDetail(it) {
    state.selected = it;
    const d = $("detail");
    $("make-stub").disabled = !it || it.kind === "stdio";
    if (!it) {
      d.replaceChildren(el("p", { class: "muted" }, "Select a request."));
      return;
    }
    const general = el("table");
    const add = (k, v) => v !== undefined && v !== "" && general.append(el("tr", {}, el("td", {}, k), el("td", {}, String(v))));
    add("id", it.id);
    add("time", new Date(it.timestamp / 1000).toISOString());
    add("request", (it.method || "") + " " + (it.path || it.direction || ""));
    add("status", it.status || "");
    add("duration", fmtDur(it.duration));
    add("stubbed", it.stubbed ? "yes" : "no");
    add("error", it.error || "");
    d.replaceChildren(
      el("h3", {}, "General"),
      general,
      el("h3", {}, "Request headers"),
      headersTable(it.requestHeaders),
      el("h3", {}, "Request body"),
      bodyView(it.requestBody),
      el("h3", {}, "Response headers"),
      headersTable(it.responseHeaders),
      el("h3", {}, "Response body"),
      el("div", { id: "response-body" }, bodyView(it.responseBody)),
    );
  }

  // ---- stubs ------------------------------------------------------------

  async function loadStubs() {
    const id = state.session;
    const tbody = $("stubs").tBodies[0];
    if (!id) {
      tbody.replaceChildren();
      return;
    }
    let items = [];
    try {
      const page = await api("GET", "/api/sessions/" + encodeURIComponent(id) + "/stubs?limit=1000");
      items = page.items || [];
    } catch (e) {
      if (e.status !== 401) $("stub-msg").textContent = e.message;
      return;
    }
    if (state.session !== id) return;
    tbody.replaceChildren(
      ...items.map((s) => {
        const p = s.pattern || {};
        const del = el("button", { type: "button", class: "danger" }, "delete");
        del.addEventListener("click", async () => {
          try {
            await api("DELETE", "/api/sessions/" + encodeURIComponent(id) + "/stubs/" + encodeURIComponent(s.stubId));
            $("stub-msg").textContent = "deleted";
          } catch (e) {
            $("stub-msg").textContent = e.message;
          }
          loadStubs();
        });
        const url = p.url || p.urlPath || p.urlPattern || "*";
        return el(
          "tr",
          { "data-stub": s.stubId },
          el("td", {}, p.method || "*"),
          el("td", { class: "url", title: url }, url),
          el("td", {}, String((s.response && s.response.status) || 200)),
          el("td", {}, del),
        );
      }),
    );
  }

  async function makeStub() {
    const it = state.selected;
    if (!it || !state.session) return;
    try {
      const st = await api("POST", "/api/sessions/" + encodeURIComponent(state.session) + "/stubs/from-traffic", { trafficId: it.id });
      $("stub-msg").textContent = "stub " + (st && st.stubId ? st.stubId : "") + " created";
    } catch (e) {
      $("stub-msg").textContent = "make a stub: " + e.message;
    }
    loadStubs();
  }

  // ---- HAR --------------------------------------------------------------

  function harHeaders(h) {
    const out = [];
    for (const k of Object.keys(h || {}).sort()) for (const v of h[k]) out.push({ name: k, value: v });
    return out;
  }

  function header(h, name) {
    for (const k of Object.keys(h || {})) if (k.toLowerCase() === name) return h[k][0];
    return "";
  }

  function harEntry(it) {
    const path = it.path || "/";
    const host = header(it.requestHeaders, "host") || location.host;
    const url = "http:" + "//" + host + (path.startsWith("/") ? path : "/" + path);
    const q = path.indexOf("?");
    const queryString = [];
    if (q >= 0) for (const [name, value] of new URLSearchParams(path.slice(q + 1))) queryString.push({ name, value });
    const rb = it.requestBody || {};
    const sb = it.responseBody || {};
    const request = {
      method: it.method || "GET",
      url,
      httpVersion: "HTTP/1.1",
      cookies: [],
      headers: harHeaders(it.requestHeaders),
      queryString,
      headersSize: -1,
      bodySize: rb.size || 0,
    };
    if (rb.text != null || rb.base64 != null) {
      request.postData = {
        mimeType: header(it.requestHeaders, "content-type"),
        text: rb.text != null ? rb.text : rb.base64,
      };
      if (rb.base64 != null) request.postData.comment = "base64";
    }
    const content = { size: sb.size || 0, mimeType: header(it.responseHeaders, "content-type") };
    if (sb.text != null) content.text = sb.text;
    else if (sb.base64 != null) {
      content.text = sb.base64;
      content.encoding = "base64";
    }
    if (sb.truncated) content.comment = "truncated by proxyctl's capture";
    const dur = typeof it.duration === "number" ? it.duration : 0;
    const entry = {
      startedDateTime: new Date(it.timestamp / 1000).toISOString(),
      time: dur,
      request,
      response: {
        status: it.status || 0,
        statusText: "",
        httpVersion: "HTTP/1.1",
        cookies: [],
        headers: harHeaders(it.responseHeaders),
        content,
        redirectURL: header(it.responseHeaders, "location"),
        headersSize: -1,
        bodySize: sb.size || 0,
      },
      cache: {},
      timings: { send: 0, wait: dur, receive: 0 },
      _proxyctl: { id: it.id, stubbed: !!it.stubbed },
    };
    if (it.error) entry.comment = it.error;
    return entry;
  }

  function downloadHAR() {
    if (!state.session) return;
    const har = {
      log: {
        version: "1.2",
        creator: { name: "proxyctl", version: "ui" },
        pages: [],
        entries: state.rows.filter((it) => it.kind !== "stdio").map(harEntry),
      },
    };
    const blob = new Blob([JSON.stringify(har, null, 2)], { type: "application/json" });
    const a = el("a", { href: URL.createObjectURL(blob), download: state.session + ".har" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  // ---- wiring -----------------------------------------------------------

  function init() {
    $("grid").addEventListener("scroll", () => {
      const g = $("grid");
      $("follow").checked = g.scrollTop + g.clientHeight >= g.scrollHeight - ROW_H;
      scheduleRender(false);
    });
    window.addEventListener("resize", () => scheduleRender(false));
    $("grid-rows").addEventListener("click", (ev) => {
      const row = ev.target.closest(".grid-row");
      if (!row) return;
      showDetail(state.view[Number(row.dataset.index)] || null);
      scheduleRender(false);
    });
    $("grid").addEventListener("keydown", (ev) => {
      if (ev.key !== "ArrowDown" && ev.key !== "ArrowUp") return;
      ev.preventDefault();
      let i = state.view.indexOf(state.selected);
      i = Math.max(0, Math.min(state.view.length - 1, i + (ev.key === "ArrowDown" ? 1 : -1)));
      if (!state.view[i]) return;
      showDetail(state.view[i]);
      const g = $("grid");
      if (i * ROW_H < g.scrollTop) g.scrollTop = i * ROW_H;
      else if ((i + 1) * ROW_H > g.scrollTop + g.clientHeight) g.scrollTop = (i + 1) * ROW_H - g.clientHeight;
      scheduleRender(false);
    });
    const refilter = () => {
      state.filter = {
        text: $("filter-text").value.trim().toLowerCase(),
        method: $("filter-method").value,
        status: $("filter-status").value,
      };
      applyFilter();
      scheduleRender(false);
    };
    $("filter-text").addEventListener("input", refilter);
    $("filter-method").addEventListener("change", refilter);
    $("filter-status").addEventListener("change", refilter);
    $("follow").addEventListener("change", () => scheduleRender(true));
    $("make-stub").addEventListener("click", makeStub);
    $("har").addEventListener("click", downloadHAR);
    $("sessions-refresh").addEventListener("click", loadSessions);
    $("token-btn").addEventListener("click", () => {
      if (askToken()) {
        loadSessions();
        if (state.session) selectSession(state.session);
      }
    });
    loadSessions();
    setInterval(loadSessions, 3000);
  }

  init();
})();
