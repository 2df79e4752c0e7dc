/* The host page (templates/containers/host_detail.html): stats of all containers, the live container table. */
(function () {
  const D = window.DockMon, esc = D.esc, hostId = JSON.parse(document.getElementById("host-id").textContent);
  document.querySelectorAll(".bytes").forEach(function (el) { el.textContent = D.bytes(el.dataset.bytes); });
  let range = "1h", points = [];
  function draw() {
    D.chart(document.getElementById("chart-cpu"), points.map(function (p) { return { t: p.t, v: p.cpu_percent }; }), { cls: "cpu", label: D.pct });
    D.chart(document.getElementById("chart-mem"), points.map(function (p) { return { t: p.t, v: p.mem_bytes }; }), { cls: "mem", label: D.bytes, bytes: true });
  }
  async function load(r) {
    range = r;
    document.querySelectorAll("[data-range]").forEach(function (b) { const on = b.dataset.range === r; b.classList.toggle("primary", on); b.setAttribute("aria-pressed", on); });
    try { points = (await D.api("GET", "/api/v1/hosts/" + hostId + "/stats/?range=" + r)).points; draw(); } catch (err) { D.toast(err.message, "bad"); }
  }
  document.querySelectorAll("[data-range]").forEach(function (b) { b.addEventListener("click", function () { load(b.dataset.range); }); });
  load("1h");
  // The 1 h chart grows with every stats cycle: the host totals ride on each stats.sample.
  D.onOpen(function () { D.send({ action: "stats.subscribe", hosts: [hostId] }); });
  D.on("stats.sample", function (d) {
    if (d.host !== hostId || range !== "1h" || !d.host_totals) return;
    points.push({ t: d.t, cpu_percent: d.host_totals.cpu_percent, mem_bytes: d.host_totals.mem_bytes });
    if (points.length > 720) points.shift();
    draw();
  });

  D.on("host.status", function (d) { if (d.host !== hostId) return; const b = document.getElementById("host-status"); b.className = "badge " + d.status; b.textContent = d.status; });
  const body = document.querySelector("#host-containers tbody");
  function counts() {
    const rows = body.querySelectorAll("tr[data-key]");
    document.getElementById("n-total").textContent = rows.length;
    document.getElementById("n-running").textContent = body.querySelectorAll("tr[data-key] .badge.state.running").length;
    const empty = body.querySelector("tr.empty");
    if (rows.length && empty) empty.remove();
    if (!rows.length && !empty) body.insertAdjacentHTML("beforeend", '<tr class="empty"><td colspan="5" class="muted">No containers.</td></tr>');
  }
  function row(key) { return body.querySelector('tr[data-key="' + CSS.escape(key) + '"]'); }
  function badge(el, cls, value) { el.className = "badge " + cls + " " + value; el.textContent = value; }
  D.on("container.created", function (d) {
    if (d.host !== hostId || row(d.key)) return;
    const tr = document.createElement("tr"); tr.dataset.key = d.key;
    tr.innerHTML = '<td><a class="name" href="' + D.prefix() + '/containers/' + esc(d.key) + '/">' + esc(d.name) + '</a></td><td><span class="badge state"></span></td>' +
      '<td class="hide-sm"><span class="badge health"></span></td><td class="hide-sm mono small">' + esc(d.image || "") + '</td><td class="hide-sm small muted status"></td>';
    badge(tr.querySelector(".badge.state"), "state", d.state || "created"); badge(tr.querySelector(".badge.health"), "health", d.health || "none");
    tr.querySelector(".status").textContent = d.status || "";
    // Keep the table in name order.
    const after = Array.from(body.querySelectorAll("tr[data-key]")).find(function (other) { return other.querySelector("a.name").textContent.localeCompare(d.name) > 0; });
    body.insertBefore(tr, after || null);
    counts();
  });
  D.on("container.state", function (d) {
    const tr = row(d.key); if (!tr) return;
    if (d.state) badge(tr.querySelector(".badge.state"), "state", d.state);
    if (d.health) badge(tr.querySelector(".badge.health"), "health", d.health);
    if (d.status != null) tr.querySelector(".status").textContent = d.status;
    counts();
  });
  D.on("container.renamed", function (d) { const tr = row(d.key); if (tr && d.name) tr.querySelector("a.name").textContent = d.name; });
  D.on("container.removed", function (d) { const tr = row(d.key); if (tr) { tr.remove(); counts(); } });
})();
