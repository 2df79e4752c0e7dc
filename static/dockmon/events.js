/* The event log (templates/containers/events.html): new events that match the page's filters are added live. */
(function () {
  const D = window.DockMon, esc = D.esc, table = document.getElementById("events"), form = document.getElementById("event-filters");
  // The filters as the server applied them (the form fields may have been edited since).
  const params = new URLSearchParams(location.search);
  const category = form.category.value && params.get("category") === form.category.value ? form.category.value : "";
  const severity = form.severity.value && params.get("severity") === form.severity.value ? form.severity.value : "";
  const host = form.host.value && params.get("host") === form.host.value ? form.host.value : "";
  const q = (params.get("q") || "").trim().toLowerCase();
  const container = (params.get("container") || "").trim().toLowerCase();
  const keys = new Set(JSON.parse(document.getElementById("container-keys").textContent));
  const seen = new Set(Array.from(table.querySelectorAll("tr[data-event]")).map(function (tr) { return tr.dataset.event; }));
  D.on("*", function (d, msg) {
    if (!d || !d.event_id || !d.message || seen.has(String(d.event_id))) return;  // only logged events, as on this page
    if (category && msg.type.split(".")[0] !== category && !(category === "user" && msg.type === "container.operation")) return;
    if (severity && d.severity !== severity) return;
    if (host && d.host !== host) return;
    if (container && !keys.has(d.key) && String(d.name || "").toLowerCase() !== container) return;
    if (q && d.message.toLowerCase().indexOf(q) < 0 && msg.type.toLowerCase().indexOf(q) < 0) return;
    seen.add(String(d.event_id));
    const body = table.querySelector("tbody"); const empty = body.querySelector(".empty"); if (empty) empty.remove();
    const tr = document.createElement("tr"); tr.dataset.event = d.event_id; tr.className = "new";
    tr.innerHTML = '<td class="small muted" data-ago="' + esc(msg.ts) + '" title="' + esc(msg.ts) + '">' + D.ago(msg.ts) + '</td><td><span class="badge ' + esc(d.severity) + '">' + esc(d.severity) + '</span></td><td class="small mono">' + esc(msg.type) + "</td><td>" +
      (d.key ? '<a href="' + D.prefix() + '/containers/' + esc(d.key) + '/">' + esc(d.message) + "</a>" : esc(d.message)) + '</td><td class="hide-sm"></td>';
    body.insertBefore(tr, body.firstChild);
    while (body.children.length > 500) body.removeChild(body.lastChild);
  });
})();
