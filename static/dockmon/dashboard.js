/* The dashboard (templates/dashboard.html): KPIs, hosts, top CPU/memory, alerts, updates, recent events; refreshed on live events. */
(function () {
  const D = window.DockMon, esc = D.esc;
  // Latest CPU/memory per host: {host id: {key: {cpu, mem}}}; a stats.sample replaces its host's entry.
  let byHost = {}, running = {};
  function link(key, name) { return '<a href="' + D.prefix() + '/containers/' + esc(key) + '/">' + esc(name) + "</a>"; }
  function topRows(field, fmt) {
    const all = [];
    Object.keys(byHost).forEach(function (h) { Object.keys(byHost[h]).forEach(function (k) { if (running[k]) all.push([k, byHost[h][k][field]]); }); });
    all.sort(function (a, b) { return b[1] - a[1]; });
    return all.slice(0, 5).map(function (e) {
      return '<tr data-key="' + esc(e[0]) + '"><td class="ellipsis">' + link(e[0], running[e[0]][0]) + '</td><td class="muted small ellipsis">' + esc(running[e[0]][1]) +
        '</td><td class="num">' + fmt(e[1]) + "</td></tr>";
    }).join("") || '<tr><td class="muted">No stats yet.</td></tr>';
  }
  function drawTop() {
    document.getElementById("top-cpu").innerHTML = topRows("cpu", D.pct);
    document.getElementById("top-mem").innerHTML = topRows("mem", D.bytes);
  }
  function render(d) {
    const online = d.hosts.filter(function (h) { return h.status === "online"; }).length;
    document.getElementById("kpi-hosts").textContent = online + " / " + d.hosts.length;
    document.getElementById("kpi-running").textContent = (d.states.running || 0) + " / " + d.total;
    document.getElementById("kpi-unhealthy").textContent = d.unhealthy;
    document.getElementById("kpi-updates").textContent = d.n_updates != null ? d.n_updates : d.updates.length;
    document.getElementById("hosts").innerHTML = d.hosts.map(function (h) {
      return '<tr data-host="' + esc(h.id) + '"><td><a href="' + D.prefix() + '/hosts/' + esc(h.id) + '/">' + esc(h.name) + '</a></td><td><span class="badge ' + esc(h.status) + '">' + esc(h.status) + "</span></td><td>" + h.running + " / " + h.total + "</td></tr>";
    }).join("") || '<tr><td class="muted">No hosts yet — add one in the admin or the API.</td></tr>';
    document.getElementById("states").innerHTML = Object.keys(d.states).sort().map(function (s) {
      return '<tr data-state="' + esc(s) + '"><td><a href="' + D.prefix() + '/containers/?state=' + esc(s) + '"><span class="badge ' + esc(s) + '">' + esc(s) + '</span></a></td><td class="num">' + d.states[s] + "</td></tr>";
    }).join("") || '<tr><td class="muted">No containers.</td></tr>';
    running = d.running || {};
    byHost = {};
    (d.top || []).forEach(function (t) { (byHost[t.host_id] = byHost[t.host_id] || {})[t.key] = { cpu: t.cpu, mem: t.mem }; });
    drawTop();
    document.getElementById("alerts").innerHTML = d.alerts.length ? d.alerts.map(function (a) {
      return '<div><span class="badge ' + esc(a.severity) + '">' + esc(a.severity) + "</span> " + (a.key ? link(a.key, a.message) : esc(a.message)) + "</div>";
    }).join("") : '<span class="muted">No open alerts.</span>';
    document.getElementById("updates").innerHTML = d.updates.map(function (u) { return "<div>" + link(u.key, u.name) + ' <span class="muted small">' + esc(u.host) + "</span></div>"; }).join("") || '<span class="muted small">Everything is up to date (or not checked yet).</span>';
    document.getElementById("events").innerHTML = d.events.map(function (e) {
      return '<tr><td class="small muted" data-ago="' + esc(e.ts) + '">' + D.ago(e.ts) + '</td><td><span class="badge ' + esc(e.severity) + '">' + esc(e.type) + "</span></td><td>" + (e.key ? link(e.key, e.message) : esc(e.message)) + "</td></tr>";
    }).join("") || '<tr><td class="muted">No events yet.</td></tr>';
  }
  render(JSON.parse(document.getElementById("dashboard-data").textContent));
  let timer = null;
  function refresh() {
    if (timer) return;
    timer = setTimeout(async function () {
      timer = null;
      try { render(await D.api("GET", "/dashboard.json")); } catch (e) { /* next event retries */ }
    }, 400);
  }
  ["container.created", "container.state", "container.removed", "container.recreated", "host.status", "update.available",
   "update.succeeded", "alert.fired", "alert.resolved", "alert.acknowledged", "health.status"].forEach(function (t) { D.on(t, refresh); });
  // Top CPU/memory follow the stats cycles: subscribe to every host shown, redraw per sample
  // (at most once per frame).
  let frame = null;
  D.on("stats.sample", function (d) {
    const entry = {};
    d.samples.forEach(function (s) { entry[s.key] = { cpu: s.cpu_percent, mem: s.mem_bytes }; });
    byHost[d.host] = entry;
    if (!frame) frame = requestAnimationFrame(function () { frame = null; drawTop(); });
  });
  D.onOpen(function () {
    const hosts = Array.from(document.querySelectorAll("#hosts tr[data-host]")).map(function (tr) { return tr.dataset.host; });
    if (hosts.length) D.send({ action: "stats.subscribe", hosts: hosts });
  });
})();
