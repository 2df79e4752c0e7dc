/* The host list (templates/containers/hosts.html): live host status and container counts. */
(function () {
  const D = window.DockMon;
  document.querySelectorAll(".bytes").forEach(function (el) { el.textContent = D.bytes(el.dataset.bytes); });
  D.on("host.status", function (d) {
    const tr = document.querySelector('tr[data-host="' + d.host + '"]'); if (!tr) return;
    const b = tr.querySelector(".badge.status"); b.className = "badge status " + d.status; b.textContent = d.status;
  });
  // Counts come from the server (one small query) after any container change, at most every 400 ms:
  // a state message alone does not say what the container was before.
  let timer = null;
  function refresh() {
    if (timer) return;
    timer = setTimeout(async function () {
      timer = null;
      let data;
      try { data = await D.api("GET", "/dashboard.json?part=hosts"); } catch (e) { return; }
      data.hosts.forEach(function (h) {
        const tr = document.querySelector('tr[data-host="' + h.id + '"]'); if (!tr) return;
        tr.querySelector(".counts .running").textContent = h.running; tr.querySelector(".counts .total").textContent = h.total;
      });
    }, 400);
  }
  ["container.created", "container.state", "container.removed", "container.recreated"].forEach(function (t) { D.on(t, refresh); });
})();
