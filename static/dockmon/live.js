/* DockMon live-update script: one WebSocket to /ws/events/, handlers per message type,
   plus the few helpers every page shares (API calls with CSRF, toasts, SVG charts). */
(function () {
  "use strict";
  const handlers = {};
  const openHooks = [];
  let socket = null, retry = 500, queue = [];

  function on(type, fn) { (handlers[type] = handlers[type] || []).push(fn); }
  function onOpen(fn) { openHooks.push(fn); if (socket && socket.readyState === 1) fn(); }
  function send(message) {
    if (socket && socket.readyState === 1) socket.send(JSON.stringify(message)); else queue.push(message);
  }
  function setDot(state) {
    const dot = document.getElementById("live-dot");
    if (dot) { dot.className = "live-dot " + state; dot.title = state === "on" ? "Live" : "Reconnecting…"; }
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const base = document.body.dataset.wsPath || "/ws/events/";
    const hosts = document.body.dataset.wsHosts;
    socket = new WebSocket(scheme + location.host + base + (hosts ? "?host=" + encodeURIComponent(hosts) : ""));
    socket.onopen = function () {
      retry = 500; setDot("on");
      openHooks.forEach(function (fn) { fn(); });
      const pending = queue; queue = [];
      pending.forEach(send);
    };
    socket.onmessage = function (msg) {
      let data; try { data = JSON.parse(msg.data); } catch (e) { return; }
      (handlers[data.type] || []).forEach(function (fn) { try { fn(data.data, data); } catch (e) { console.error(e); } });
      (handlers["*"] || []).forEach(function (fn) { try { fn(data.data, data); } catch (e) { console.error(e); } });
    };
    socket.onclose = function () {
      setDot("off");
      setTimeout(connect, retry); retry = Math.min(retry * 2, 10000);
    };
  }

  function csrf() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  async function api(method, url, body) {
    const options = { method: method, credentials: "same-origin", headers: { "X-CSRFToken": csrf(), "Accept": "application/json" } };
    if (body !== undefined) { options.headers["Content-Type"] = "application/json"; options.body = JSON.stringify(body); }
    const response = await fetch(url, options);
    let data = null;
    if (response.status !== 204) { try { data = await response.json(); } catch (e) { data = null; } }
    if (!response.ok) {
      const detail = data && (data.detail || JSON.stringify(data)) || response.statusText;
      throw new Error(detail);
    }
    return data;
  }
  function toast(text, kind) {
    const el = document.createElement("div");
    el.className = "toast " + (kind || ""); el.setAttribute("role", "status"); el.textContent = text;
    document.body.appendChild(el);
    setTimeout(function () { el.remove(); }, kind === "bad" ? 8000 : 3500);
  }
  function esc(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function bytes(n) {
    if (n == null) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; n = Number(n);
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }
  function ago(iso) {
    if (!iso) return "";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.floor(s) + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 86400) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }
  /* Sparkline: values → an SVG polyline scaled to its box. */
  function spark(svg, values, max) {
    const w = 90, h = 22, n = values.length;
    if (!n) { svg.innerHTML = ""; return; }
    const top = Math.max(max || 0, ...values, 1e-9);
    const pts = values.map(function (v, i) { return ((n === 1 ? w : i * w / (n - 1))).toFixed(1) + "," + (h - 1 - (v / top) * (h - 2)).toFixed(1); });
    svg.innerHTML = '<polyline points="' + pts.join(" ") + '"/>';
  }
  /* Line chart with an optional min–max band: series = [{t, v, min, max}] */
  function chart(svg, series, options) {
    options = options || {};
    const w = 600, h = 180, pad = 4;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h); svg.setAttribute("preserveAspectRatio", "none");
    if (!series.length) { svg.innerHTML = '<text x="10" y="20" fill="currentColor" font-size="12">No data yet</text>'; return; }
    const t0 = Date.parse(series[0].t), t1 = Date.parse(series[series.length - 1].t) || t0 + 1;
    const top = Math.max(options.max || 0, ...series.map(function (p) { return p.max != null ? p.max : p.v; }), 1e-9);
    const x = function (t) { return pad + (t1 === t0 ? w - 2 * pad : (Date.parse(t) - t0) / (t1 - t0) * (w - 2 * pad)); };
    const y = function (v) { return h - pad - (v / top) * (h - 2 * pad); };
    let band = "";
    if (series[0].min != null) {
      const upper = series.map(function (p) { return x(p.t).toFixed(1) + "," + y(p.max).toFixed(1); });
      const lower = series.slice().reverse().map(function (p) { return x(p.t).toFixed(1) + "," + y(p.min).toFixed(1); });
      band = '<polygon class="band ' + (options.cls || "") + '" points="' + upper.concat(lower).join(" ") + '"/>';
    }
    const line = series.map(function (p) { return x(p.t).toFixed(1) + "," + y(p.v).toFixed(1); }).join(" ");
    svg.innerHTML = band + '<polyline class="' + (options.cls || "") + '" style="fill:none" points="' + line + '"/>' +
      '<text x="' + (w - 6) + '" y="14" text-anchor="end" fill="currentColor" font-size="11">' + esc(options.label ? options.label(top) : top.toFixed(1)) + "</text>";
  }
  function theme(next) {
    const value = next || localStorage.getItem("dockmon-theme") ||
      (window.matchMedia && matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
    document.documentElement.dataset.theme = value;
    if (next) localStorage.setItem("dockmon-theme", next);
    return value;
  }
  theme();
  document.addEventListener("DOMContentLoaded", function () {
    const toggle = document.getElementById("theme-toggle");
    if (toggle) toggle.addEventListener("click", function () { theme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"); });
    document.querySelectorAll("[data-ago]").forEach(function (el) { el.textContent = ago(el.dataset.ago); });
    setInterval(function () { document.querySelectorAll("[data-ago]").forEach(function (el) { el.textContent = ago(el.dataset.ago); }); }, 15000);
    if (document.body.dataset.live !== "off") connect();
  });
  window.DockMon = { on: on, onOpen: onOpen, send: send, api: api, toast: toast, esc: esc, bytes: bytes, ago: ago, spark: spark, chart: chart, theme: theme };
})();
