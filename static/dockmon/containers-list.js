/* The container list (templates/containers/list.html): filters, paged rows, sparklines, bulk actions, live changes. */
(function () {
  const D = window.DockMon, esc = D.esc;
  const tbody = document.querySelector("#containers tbody");
  const items = new Map();     // key → data, for every container the user may see
  const rendered = new Map();  // key → <tr>, only for the rows on the page
  const selectedKeys = new Set();
  // Rows drawn at first and after each filter change (a screen holds 20–50); more as the reader
  // scrolls. Each redraw lays out and paints what is drawn, so this bounds the cost of a keystroke.
  const FIRST = 100, PAGE = 200;
  const HISTORY = 30;          // points per sparkline
  let limit = FIRST, matchesList = [];
  const hostNames = {};
  document.querySelectorAll("#f-host option").forEach(function (o) { if (o.value) hostNames[o.value] = o.textContent; });

  // [key, host, name, image, state, health, status, tags, update, cpu, mem]
  function toItem(r) {
    return { key: r[0], host: r[1], name: r[2], image: r[3], state: r[4], health: r[5], status: r[6], tags: r[7], update: r[8],
             cpu: r[9], mem: r[10], hist: null, text: (r[2] + " " + r[3] + " " + r[0].split(":")[1]).toLowerCase() };
  }
  function cpuText(c) { return c.cpu != null && c.state === "running" ? c.cpu.toFixed(1) + "%" : ""; }
  function memText(c) { return c.mem != null && c.state === "running" ? D.bytes(c.mem) : ""; }
  function rowHtml(c) {
    return '<td><input type="checkbox" class="sel" aria-label="Select ' + esc(c.name) + '"' + (selectedKeys.has(c.key) ? " checked" : "") + "></td>" +
      '<td class="ellipsis"><a class="name" href="' + D.prefix() + '/containers/' + esc(c.key) + '/">' + esc(c.name) + "</a>" + (c.update ? ' <span class="badge update">update</span>' : "") + "</td>" +
      '<td><span class="badge state ' + esc(c.state) + '">' + esc(c.state) + "</span></td>" +
      '<td class="hide-sm"><span class="badge health ' + esc(c.health) + '">' + esc(c.health) + "</span></td>" +
      '<td class="hide-sm mono small ellipsis" title="' + esc(c.image) + '">' + esc(c.image) + "</td>" +
      '<td class="hide-sm small ellipsis">' + esc(hostNames[c.host] || "") + "</td>" +
      '<td class="metric cpu-cell"><span class="val cpu-val small">' + cpuText(c) + '</span><svg class="spark cpu empty" aria-hidden="true"></svg></td>' +
      '<td class="metric mem-cell"><span class="val mem-val small">' + memText(c) + '</span><svg class="spark mem empty" aria-hidden="true"></svg></td>' +
      '<td class="hide-sm small muted status ellipsis">' + esc(c.status) + "</td>";
  }
  JSON.parse(document.getElementById("rows").textContent).forEach(function (r) { const c = toItem(r); items.set(c.key, c); });

  const f = { search: document.getElementById("f-search"), host: document.getElementById("f-host"), state: document.getElementById("f-state"),
              health: document.getElementById("f-health"), tag: document.getElementById("f-tag"), update: document.getElementById("f-update") };
  const params = new URLSearchParams(location.search);
  ["search", "host", "state", "health", "tag"].forEach(function (k) { if (params.get(k)) f[k].value = params.get(k); });
  if (params.get("update")) f.update.checked = true;
  function matches(c) {
    const q = f.search.value.trim().toLowerCase();
    return (!q || c.text.indexOf(q) >= 0) && (!f.host.value || c.host === f.host.value) && (!f.state.value || c.state === f.state.value) &&
      (!f.health.value || c.health === f.health.value) && (!f.tag.value || (" " + c.tags + " ").indexOf(" " + f.tag.value + " ") >= 0) &&
      (!f.update.checked || c.update);
  }
  // Only the first `limit` matching rows are in the DOM: a few hundred rows lay out in
  // milliseconds, thousands take seconds and make every live change expensive.
  function render() {
    matchesList = [];
    items.forEach(function (c) { if (matches(c)) matchesList.push(c); });
    const shown = matchesList.slice(0, limit);
    tbody.innerHTML = shown.map(function (c) { return '<tr data-key="' + esc(c.key) + '">' + rowHtml(c) + "</tr>"; }).join("") +
      (matchesList.length > shown.length ? '<tr class="more"><td colspan="9" class="muted small">Showing ' + shown.length + " of " + matchesList.length + ' — <button type="button" id="show-more">show more</button></td></tr>' : "") +
      (matchesList.length ? "" : '<tr class="empty"><td colspan="9" class="muted">No containers match.</td></tr>');
    rendered.clear();
    const trs = tbody.querySelectorAll("tr[data-key]");
    shown.forEach(function (c, i) { rendered.set(c.key, trs[i]); if (c.hist) drawStats(c, trs[i]); });
    document.getElementById("count").textContent = matchesList.length + " of " + items.size;
    const more = document.getElementById("show-more");
    if (more) { more.addEventListener("click", function () { limit += PAGE; render(); }); observer.observe(more); }
    wantHistory();
  }
  const observer = new IntersectionObserver(function (entries) {
    if (entries.some(function (e) { return e.isIntersecting; })) { observer.disconnect(); limit += PAGE; render(); }
  });
  // Filtering thousands of items is cheap; drawing is coalesced to one pass per frame.
  let filterFrame = null;
  Object.values(f).forEach(function (el) { el.addEventListener("input", function () {
    if (!filterFrame) filterFrame = requestAnimationFrame(function () { filterFrame = null; limit = FIRST; render(); });
  }); });

  // --- sparkline history: the last points of the drawn running rows, fetched once per key
  // after the socket is live and when the page is idle (typing and live changes come first),
  // merged with the live samples.
  let historyReady = false, historyTimer = null;
  const asked = new Set();
  const idle = window.requestIdleCallback || function (fn) { return setTimeout(fn, 200); };
  function wantHistory() {
    if (!historyReady || historyTimer) return;
    historyTimer = idle(loadHistory, { timeout: 2000 });
  }
  async function loadHistory() {
    historyTimer = null;
    const keys = [];
    rendered.forEach(function (tr, key) { const c = items.get(key); if (c && c.state === "running" && !asked.has(key)) keys.push(key); });
    if (!keys.length) return;
    keys.forEach(function (k) { asked.add(k); });
    for (let i = 0; i < keys.length; i += 200) {
      let data;
      try { data = await D.api("GET", "/containers/sparklines.json?keys=" + encodeURIComponent(keys.slice(i, i + 200).join(","))); } catch (e) { continue; }
      Object.keys(data.points).forEach(function (key) {
        const c = items.get(key); if (!c) return;
        const live = c.hist || [];
        const firstLive = live.length ? live[0][0] : Infinity;
        c.hist = data.points[key].filter(function (p) { return p[0] < firstLive; }).concat(live).slice(-HISTORY);
        c.limit = c.limit || data.limits[key];
        const tr = rendered.get(key); if (tr) drawStats(c, tr);
      });
    }
  }
  D.onOpen(function () { historyReady = true; wantHistory(); });
  render();

  function updateSelected() { document.getElementById("selected-count").textContent = selectedKeys.size + " selected"; }
  tbody.addEventListener("change", function (e) {
    if (!e.target.classList.contains("sel")) return;
    const key = e.target.closest("tr").dataset.key;
    if (e.target.checked) selectedKeys.add(key); else selectedKeys.delete(key);
    updateSelected();
  });
  document.getElementById("select-all").addEventListener("change", function (e) {
    matchesList.forEach(function (c) { if (e.target.checked) selectedKeys.add(c.key); else selectedKeys.delete(c.key); });
    rendered.forEach(function (tr) { tr.querySelector(".sel").checked = e.target.checked; });
    updateSelected();
  });

  // --- bulk actions. The API runs a small selection inside the request (200, every result in
  // `results`) and hands a large one to a worker (202: a job whose items are still pending).
  // A pending job is followed live (bulk.item / bulk.finished) and read again at
  // /api/v1/bulk-jobs/{id}/ until it has finished; either way every item's outcome is reported.
  // (An older API answered {results} without a job: that is reported the same way.)
  const progress = document.getElementById("bulk-progress");
  let following = null;  // {id, total, done, resolve}
  function report(action, results) {
    const failed = results.filter(function (r) { return !r.ok; });
    const label = function (r) { const c = items.get(r.key); return (c ? c.name : r.key) + ": " + (r.error || "failed"); };
    D.toast(action + ": " + (results.length - failed.length) + " done" + (failed.length ? ", " + failed.length + " failed — " +
      failed.slice(0, 5).map(label).join("; ") + (failed.length > 5 ? " …" : "") : ""), failed.length ? "bad" : "ok");
  }
  function finished(job) { return !job.id || job.status === "finished" || job.status === "failed" || !!job.finished_at; }
  async function follow(job) {
    const url = "/api/v1/bulk-jobs/" + encodeURIComponent(job.id) + "/";
    while (!finished(job)) {
      progress.textContent = job.action + ": " + (job.done || 0) + " of " + job.total + " done…";
      // Woken by bulk.finished, or after a few seconds (a socket may have missed it).
      await new Promise(function (resolve) { following = { id: String(job.id), resolve: resolve }; setTimeout(resolve, 3000); });
      try { job = await D.api("GET", url); } catch (err) { following = null; progress.textContent = ""; D.toast(err.message, "bad"); return; }
    }
    following = null;
    progress.textContent = "";
    if (job.status === "failed" && job.error) D.toast(job.action + " failed: " + job.error, "bad");
    else report(job.action, job.results || []);
  }
  D.on("bulk.item", function (d) {
    if (!following || String(d.job) !== following.id) return;
    progress.textContent = d.action + ": " + d.done + " of " + d.total + " done…";
  });
  D.on("bulk.finished", function (d) { if (following && String(d.job) === following.id) following.resolve(); });
  document.getElementById("bulk-go").addEventListener("click", async function (e) {
    const button = e.currentTarget;
    const action = document.getElementById("bulk-action").value, picked = Array.from(selectedKeys).filter(function (k) { return items.has(k); });
    if (!action || !picked.length) { D.toast("Choose an action and at least one container.", "bad"); return; }
    if (["stop", "kill", "remove", "restart"].indexOf(action) >= 0) {
      const answer = await D.confirm({ title: action.charAt(0).toUpperCase() + action.slice(1) + " " + picked.length + " container(s)?",
        text: picked.slice(0, 8).map(function (k) { return items.get(k).name; }).join(", ") + (picked.length > 8 ? " …" : ""),
        confirm: action, danger: action !== "restart" });
      if (!answer.ok) return;
    }
    button.disabled = true;
    try {
      const job = await D.api("POST", "/api/v1/containers/bulk/", { action: action, keys: picked });
      job.action = job.action || action; job.total = job.total || picked.length;
      if (finished(job)) report(job.action, job.results || []); else await follow(job);
    } catch (err) { D.toast(err.message, "bad"); } finally { button.disabled = false; }
  });

  function drawStats(c, tr) {
    if (!c.hist || c.state !== "running") return;
    D.spark(tr.querySelector("svg.cpu"), c.hist.map(function (p) { return p[1]; }), 100);
    D.spark(tr.querySelector("svg.mem"), c.hist.map(function (p) { return p[2]; }), c.limit);
    tr.querySelector(".cpu-val").textContent = cpuText(c); tr.querySelector(".mem-val").textContent = memText(c);
  }
  // Live changes are applied once per animation frame, however many arrive in between.
  const dirty = new Map();
  let frame = null;
  function schedule(key, change) {
    dirty.set(key, Object.assign(dirty.get(key) || {}, change));
    if (!frame) frame = requestAnimationFrame(flush);
  }
  function flush() {
    frame = null;
    let rerender = false;
    dirty.forEach(function (change, key) {
      if (change.removed) { if (items.delete(key)) { selectedKeys.delete(key); rerender = true; } return; }
      let c = items.get(key);
      if (!c) {
        if (!change.created) return;
        c = toItem([key, change.host, change.name, change.image || "", change.state, change.health || "none", change.status || "",
                    change.compose_project ? "compose:" + change.compose_project : "", 0, null, null]);
        items.set(key, c); rerender = true;
      }
      const before = matches(c);
      let redraw = false;
      if (change.state && change.state !== c.state) { c.state = change.state; redraw = true; }
      if (change.health && change.health !== c.health) { c.health = change.health; redraw = true; }
      if (change.status != null && change.status !== c.status) { c.status = change.status; redraw = true; }
      if (change.name && change.name !== c.name) { c.name = change.name; c.text = (c.name + " " + c.image + " " + key.split(":")[1]).toLowerCase(); redraw = true; }
      if (change.update != null && change.update !== c.update) { c.update = change.update; redraw = true; }
      if (change.samples) {
        change.samples.forEach(function (s) { c.hist = (c.hist || []).concat([[s.t, s.cpu_percent, s.mem_bytes]]).slice(-HISTORY); c.cpu = s.cpu_percent; c.mem = s.mem_bytes; c.limit = s.mem_limit; });
      }
      if (matches(c) !== before) { rerender = true; return; }
      const tr = rendered.get(key);
      if (!tr) return;
      if (redraw) tr.innerHTML = rowHtml(c);
      if (c.state === "running" && (redraw || change.samples)) drawStats(c, tr);
    });
    dirty.clear();
    if (rerender) render();
  }
  D.on("container.created", function (d) { schedule(d.key, Object.assign({ created: true }, d)); });
  D.on("container.state", function (d) { schedule(d.key, { state: d.state, health: d.health, status: d.status }); });
  D.on("container.renamed", function (d) { schedule(d.key, { name: d.name }); });
  D.on("container.removed", function (d) { schedule(d.key, { removed: true }); });
  D.on("update.available", function (d) { if (d.key) schedule(d.key, { update: 1 }); });
  D.on("update.check", function (d) { if (d.stage === "container" && d.key && d.update_available != null) schedule(d.key, { update: d.update_available ? 1 : 0 }); });
  D.on("stats.sample", function (d) {
    const t = Date.parse(d.t);
    d.samples.forEach(function (s) {
      if (!items.has(s.key)) return;
      const prev = dirty.get(s.key);
      const samples = (prev && prev.samples || []).concat([Object.assign({ t: t }, s)]);
      schedule(s.key, { samples: samples });
    });
  });
  D.onOpen(function () {
    const hosts = Object.keys(hostNames);
    if (hosts.length) D.send({ action: "stats.subscribe", hosts: hosts });
  });
})();
