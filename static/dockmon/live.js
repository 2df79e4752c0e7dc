/* DockMon live-update script: one WebSocket to /ws/events/, handlers per message type,
   plus the few helpers every page shares (API calls with CSRF, toasts, a confirmation
   dialog, SVG charts). */
(function () {
  "use strict";
  const handlers = {};
  const openHooks = [];
  let socket = null, retry = 500, queue = [], started = false, everOpened = false, resyncing = false, lastError = "";
  // The socket is opened as soon as <body> exists (base.html calls start()), while the rest of
  // the page is still being parsed. Messages that arrive before the page's own scripts have
  // registered their handlers wait here until DOMContentLoaded, so none is lost.
  let parked = document.readyState === "loading" ? [] : null;

  function on(type, fn) { (handlers[type] = handlers[type] || []).push(fn); }
  function onOpen(fn) { openHooks.push(fn); if (socket && socket.readyState === 1 && parked === null) fn(); }
  function send(message) {
    if (socket && socket.readyState === 1) socket.send(JSON.stringify(message)); else queue.push(message);
  }
  function setDot(state) {
    const dot = document.getElementById("live-dot");
    if (dot) { dot.className = "live-dot " + state; dot.title = state === "on" ? "Live" : "Reconnecting…"; }
  }
  function dispatch(data) {
    (handlers[data.type] || []).forEach(function (fn) { try { fn(data.data, data); } catch (e) { console.error(e); } });
    (handlers["*"] || []).forEach(function (fn) { try { fn(data.data, data); } catch (e) { console.error(e); } });
    // The stream had a hole (the server lost Redis, or this socket was down): what the page shows
    // may be stale. A page that can refetch its own state registers "stream.resync"; any other
    // page is reloaded once, so it never keeps showing something that is no longer true.
    if (data.type === "stream.resync" && !(handlers["stream.resync"] || []).length && !resyncing) {
      resyncing = true;
      toast("The live stream was interrupted; reloading to show the current state.", "bad");
      setTimeout(function () { location.reload(); }, 1500);
    }
  }
  function opened() {
    openHooks.forEach(function (fn) { try { fn(); } catch (e) { console.error(e); } });
    const pending = queue; queue = [];
    pending.forEach(send);
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const base = document.body.dataset.wsPath || "/ws/events/";
    const hosts = document.body.dataset.wsHosts;
    socket = new WebSocket(scheme + location.host + base + (hosts ? "?host=" + encodeURIComponent(hosts) : ""));
    socket.onopen = function () {
      retry = 500; setDot("on");
      if (parked === null) opened();
      // Opened again after a drop: whatever happened meanwhile was not streamed to this page.
      if (everOpened) { const hole = { type: "stream.resync", data: { reason: "reconnected" } }; if (parked !== null) parked.push(hole); else dispatch(hole); }
      everOpened = true;
    };
    socket.onmessage = function (msg) {
      let data; try { data = JSON.parse(msg.data); } catch (e) { return; }
      // An error about the connection itself (no container, no session) says why it is closing.
      if (data.type === "error" && data.data && data.data.reason && !data.data.key && data.data.session === undefined) lastError = data.data.message;
      if (parked !== null) parked.push(data); else dispatch(data);
    };
    socket.onclose = function (event) {
      setDot("off");
      if (event.code === 4401 || event.code === 4403) {
        // The server ended the stream because this page's session (or account) is no longer
        // valid: say so and reload, which shows the login page if the session is really gone
        // (at most once a minute, never a reload loop).
        toast(lastError || "Your session has ended.", "bad");
        const last = Number(sessionStorage.getItem("dockmon-ended-reload") || 0);
        if (Date.now() - last > 60000) {
          sessionStorage.setItem("dockmon-ended-reload", String(Date.now()));
          setTimeout(function () { location.reload(); }, 2000);
          return;
        }
      }
      lastError = "";
      setTimeout(connect, retry); retry = Math.min(retry * 2, 10000);
    };
  }
  function start() {
    if (started || !document.body || document.body.dataset.live === "off") return;
    started = true;
    connect();
  }

  // The sub-path DockMon is served under behind a reverse proxy ("" at the root): base.html puts
  // the request's script prefix on <body>. Every absolute DockMon path goes through url().
  function prefix() { return (document.body && document.body.dataset.prefix) || ""; }
  function url(path) {
    const p = prefix();
    return p && typeof path === "string" && path.charAt(0) === "/" && path.indexOf(p + "/") !== 0 ? p + path : path;
  }
  function csrf() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  async function api(method, path, body) {
    const prefixed = url(path);
    const options = { method: method, credentials: "same-origin", headers: { "X-CSRFToken": csrf(), "Accept": "application/json" } };
    if (body !== undefined) { options.headers["Content-Type"] = "application/json"; options.body = JSON.stringify(body); }
    const response = await fetch(prefixed, options);
    let data = null;
    if (response.status !== 204) { try { data = await response.json(); } catch (e) { data = null; } }
    if (!response.ok) {
      const detail = data && (data.detail || fieldErrors(data)) || response.statusText;
      const error = new Error(detail); error.status = response.status; error.data = data;
      throw error;
    }
    return data;
  }
  function fieldErrors(data) {
    if (typeof data !== "object") return String(data);
    return Object.keys(data).map(function (k) { const v = data[k]; return k + ": " + (Array.isArray(v) ? v.join(" ") : typeof v === "object" ? JSON.stringify(v) : v); }).join("; ");
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
    if (n == null || n === "") return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; n = Number(n);
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(n < 10 ? 1 : 0) : n) + " " + units[i];
  }
  /* A percentage with as many decimals as small values need: 0.1 % stays 0.1 %, never "0 %". */
  function pct(v) {
    v = Number(v) || 0;
    if (v === 0) return "0 %";
    const digits = v < 0.1 ? 2 : v < 10 ? 1 : 0;
    return v.toFixed(digits) + " %";
  }
  function ago(iso) {
    if (!iso) return "";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.floor(s) + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 86400) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }
  /* Sparkline: values → an SVG polyline scaled to its box. Fewer than two values draw nothing
     and the SVG is hidden (class "empty"), so a row without history keeps its values in line. */
  function spark(svg, values, max) {
    const w = 60, h = 18, n = values.length;
    if (n < 2) { svg.innerHTML = ""; svg.classList.add("empty"); return; }
    svg.classList.remove("empty");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    const top = Math.max(max || 0, ...values, 1e-9);
    const pts = values.map(function (v, i) { return (i * w / (n - 1)).toFixed(1) + "," + (h - 1 - (v / top) * (h - 2)).toFixed(1); });
    svg.innerHTML = '<polyline points="' + pts.join(" ") + '"/>';
  }
  /* The smallest "round" number (1, 2, 2.5, 5 × 10^n) at or above v: axis tops people can read. */
  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) { if (m * p >= v * 0.999999) return m * p; }
    return 10 * p;
  }
  function niceBytes(v) {
    if (!(v > 0)) return 1024;
    const unit = Math.pow(1024, Math.max(0, Math.floor(Math.log(v) / Math.log(1024))));
    const nice = niceCeil(v / unit);
    return (nice >= 1000 ? 1024 : nice) * unit;  // 1 MiB, not "1000 KiB"
  }
  function clock(t, span) {
    const d = new Date(t), two = function (n) { return String(n).padStart(2, "0"); };
    const hm = two(d.getHours()) + ":" + two(d.getMinutes());
    if (span > 86400000) return (d.getMonth() + 1) + "/" + d.getDate() + " " + hm;
    return span < 900000 ? hm + ":" + two(d.getSeconds()) : hm;
  }
  /* Line chart with an optional min–max band: series = [{t, v, min, max}].
     options: cls (css class of the line), label(top) → axis text, max (axis at least this),
     bytes (round the axis to binary units). The viewBox is the SVG's own pixel size, so text is
     never stretched; charts redraw when the window is resized. */
  function chart(svg, series, options) {
    options = options || {};
    svg.__chart = [series, options];
    const box = svg.getBoundingClientRect();
    const w = Math.round(box.width) || 600, h = Math.round(box.height) || 180;
    const left = 46, right = 8, top0 = 8, bottom = 18;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h); svg.removeAttribute("preserveAspectRatio");
    if (!series.length) {
      svg.innerHTML = '<text class="axis" x="' + left + '" y="' + (h / 2) + '">' + esc(options.empty || "No data yet") + "</text>";
      svg.dataset.points = "0";
      return;
    }
    const t0 = Date.parse(series[0].t), t1 = Date.parse(series[series.length - 1].t);
    const highest = Math.max(options.max || 0, ...series.map(function (p) { return p.max != null ? p.max : p.v; }), 0);
    const top = options.bytes ? niceBytes(highest) : niceCeil(highest);
    const pw = w - left - right, ph = h - top0 - bottom;
    const x = function (t) { return left + (t1 === t0 ? pw : (Date.parse(t) - t0) / (t1 - t0) * pw); };
    const y = function (v) { return top0 + ph - (Math.max(0, v) / top) * ph; };
    const label = options.label || function (v) { return String(+v.toFixed(2)); };
    let out = "";
    [0, 0.5, 1].forEach(function (f) {
      const yy = (top0 + ph - f * ph).toFixed(1);
      out += '<line class="grid" x1="' + left + '" x2="' + (w - right) + '" y1="' + yy + '" y2="' + yy + '"/>' +
        '<text class="axis" x="' + (left - 4) + '" y="' + (Number(yy) + 4) + '" text-anchor="end">' + esc(label(top * f)) + "</text>";
    });
    out += '<text class="axis" x="' + left + '" y="' + (h - 4) + '">' + esc(clock(t0, t1 - t0)) + "</text>" +
      '<text class="axis" x="' + (w - right) + '" y="' + (h - 4) + '" text-anchor="end">' + esc(clock(t1, t1 - t0)) + "</text>";
    if (series[0].min != null) {
      const upper = series.map(function (p) { return x(p.t).toFixed(1) + "," + y(p.max).toFixed(1); });
      const lower = series.slice().reverse().map(function (p) { return x(p.t).toFixed(1) + "," + y(p.min).toFixed(1); });
      out += '<polygon class="band ' + esc(options.cls || "") + '" points="' + upper.concat(lower).join(" ") + '"/>';
    }
    const line = series.map(function (p) { return x(p.t).toFixed(1) + "," + y(p.v).toFixed(1); }).join(" ");
    const last = series[series.length - 1];
    out += '<polyline class="line ' + esc(options.cls || "") + '" points="' + line + '"/>' +
      '<circle class="' + esc(options.cls || "") + '" r="2.5" cx="' + x(last.t).toFixed(1) + '" cy="' + y(last.v).toFixed(1) + '"/>';
    svg.innerHTML = out;
    svg.dataset.points = String(series.length);
  }
  let resizeFrame = null;
  window.addEventListener("resize", function () {
    if (resizeFrame) return;
    resizeFrame = requestAnimationFrame(function () {
      resizeFrame = null;
      document.querySelectorAll("svg.chart").forEach(function (svg) { if (svg.__chart) chart(svg, svg.__chart[0], svg.__chart[1]); });
    });
  });

  /* A modal confirmation: resolves to {ok, values} (values: the options' checkboxes by name).
     Escape or Cancel resolves ok=false. The safe button has the focus for dangerous actions. */
  function confirmDialog(opts) {
    opts = opts || {};
    let dialog = document.getElementById("confirm-dialog");
    if (!dialog) {
      dialog = document.createElement("dialog");
      dialog.id = "confirm-dialog";
      dialog.setAttribute("aria-labelledby", "confirm-title");
      document.body.appendChild(dialog);
    }
    dialog.innerHTML = '<form method="dialog"><h2 id="confirm-title"></h2><p id="confirm-text" class="small"></p><div id="confirm-options"></div>' +
      '<div class="toolbar end"><button type="submit" value="cancel" id="confirm-cancel">Cancel</button>' +
      '<button type="submit" value="ok" id="confirm-ok"></button></div></form>';
    dialog.querySelector("#confirm-title").textContent = opts.title || "Are you sure?";
    dialog.querySelector("#confirm-text").textContent = opts.text || "";
    const ok = dialog.querySelector("#confirm-ok");
    ok.textContent = opts.confirm || "Confirm";
    ok.className = opts.danger ? "danger" : "primary";
    const box = dialog.querySelector("#confirm-options");
    (opts.options || []).forEach(function (o) {
      const label = document.createElement("label");
      label.className = "small option";
      label.innerHTML = '<input type="checkbox" name="' + esc(o.name) + '"' + (o.checked ? " checked" : "") + "> " + esc(o.label);
      box.appendChild(label);
    });
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function () {
        const values = {};
        box.querySelectorAll("input[type=checkbox]").forEach(function (i) { values[i.name] = i.checked; });
        resolve({ ok: dialog.returnValue === "ok", values: values });
      }, { once: true });
      dialog.returnValue = "";
      dialog.showModal();
      (opts.danger ? dialog.querySelector("#confirm-cancel") : ok).focus();
    });
  }

  function theme(next) {
    const value = next || localStorage.getItem("dockmon-theme") ||
      (window.matchMedia && matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
    document.documentElement.dataset.theme = value;
    if (next) localStorage.setItem("dockmon-theme", next);
    const toggle = document.getElementById("theme-toggle");
    if (toggle) toggle.setAttribute("aria-pressed", value === "dark" ? "true" : "false");
    return value;
  }
  theme();
  function refreshAgo() { document.querySelectorAll("[data-ago]").forEach(function (el) { el.textContent = ago(el.dataset.ago); }); }
  document.addEventListener("DOMContentLoaded", function () {
    const toggle = document.getElementById("theme-toggle");
    theme();  // again, now that the toggle exists: its aria-pressed state
    if (toggle) toggle.addEventListener("click", function () { theme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"); });
    refreshAgo();
    setInterval(refreshAgo, 15000);
    start();
    // Hand over what arrived while the page was still loading, then run the open hooks the
    // page registered (subscriptions) if the socket is already open.
    const early = parked || []; parked = null;
    early.forEach(dispatch);
    if (socket && socket.readyState === 1) opened();
  });
  window.DockMon = {
    on: on, onOpen: onOpen, send: send, api: api, url: url, prefix: prefix, toast: toast, esc: esc, bytes: bytes, pct: pct, ago: ago, spark: spark,
    chart: chart, theme: theme, confirm: confirmDialog, start: start, niceCeil: niceCeil,
  };
})();
