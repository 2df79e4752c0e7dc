/* The Alerts page (templates/alerts/alerts.html): alert actions, rules, maintenance windows, live alerts. */
(function () {
  const D = window.DockMon, esc = D.esc, table = document.getElementById("alerts-table");
  const canChange = table.dataset.canChange === "1";
  const filter = new URLSearchParams(location.search).get("state") || "open";
  function wanted(a) { return filter === "all" || (filter === "open" ? a.state !== "resolved" : a.state === filter); }
  function rowHtml(a) {
    const subject = a.container ? '<a href="' + D.prefix() + '/containers/' + esc(a.container) + '/">' + esc(a.subject_name) + "</a>" : a.host ? '<a href="' + D.prefix() + '/hosts/' + esc(a.host) + '/">' + esc(a.subject_name) + "</a>" : esc(a.subject_name);
    let actions = "";
    if (canChange && a.state !== "resolved") {
      const labels = { acknowledge: "Ack", snooze: "Snooze 1h", resolve: "Resolve", note: "Note" };
      actions = Object.keys(labels).filter(function (act) { return act !== "acknowledge" || a.state !== "acknowledged"; })
        .map(function (act) { return '<button type="button" data-act=' + JSON.stringify(act) + ">" + labels[act] + "</button>"; }).join(" ");
    }
    return '<td><span class="badge ' + esc(a.severity) + '">' + esc(a.severity) + "</span></td>" +
      "<td><strong>" + esc(a.title) + '</strong><div class="small muted">' + esc((a.message || "").slice(0, 160)) + "</div></td>" +
      '<td class="hide-sm small">' + subject + "</td>" +
      '<td><span class="badge ' + esc(a.state) + '">' + esc(a.state) + "</span></td>" +
      '<td class="hide-sm">' + a.occurrences + "</td>" +
      '<td class="hide-sm small muted" data-ago="' + esc(a.first_seen_at) + '">' + D.ago(a.first_seen_at) + "</td>" +
      '<td class="small muted" data-ago="' + esc(a.last_seen_at) + '">' + D.ago(a.last_seen_at) + "</td>" +
      '<td class="small">' + actions + "</td>";
  }
  function show(a) {
    const body = table.querySelector("tbody");
    let tr = body.querySelector('tr[data-alert="' + a.id + '"]');
    if (!wanted(a)) { if (tr) tr.remove(); return; }
    if (!tr) { tr = document.createElement("tr"); tr.dataset.alert = a.id; body.insertBefore(tr, body.firstChild); const empty = body.querySelector(".empty"); if (empty) empty.remove(); }
    tr.innerHTML = rowHtml(a);
  }
  async function refresh(id) { try { show(await D.api("GET", "/api/v1/alerts/" + id + "/")); } catch (e) { /* gone or not visible */ } }
  table.addEventListener("click", async function (ev) {
    const button = ev.target.closest("button[data-act]"); if (!button) return;
    const id = button.closest("tr").dataset.alert, act = button.dataset.act;
    try {
      if (act === "note") {
        const text = prompt("Note"); if (!text) return;
        await D.api("POST", "/api/v1/alerts/" + id + "/notes/", { text: text });
        D.toast("Note added", "ok"); return;
      }
      const result = await D.api("POST", "/api/v1/alerts/" + id + "/" + act + "/", act === "snooze" ? { minutes: 60 } : undefined);
      D.toast("Alert " + id + ": " + act + " done", "ok");
      if (result && result.id) show(result); else refresh(id);
    } catch (e) { D.toast(e.message, "bad"); }
  });
  function bindToggle(box) {
    box.addEventListener("change", async function () {
      const id = box.closest("tr").dataset.rule;
      try { await D.api("PATCH", "/api/v1/alert-rules/" + id + "/", { enabled: box.checked }); D.toast("Rule saved", "ok"); }
      catch (e) { box.checked = !box.checked; D.toast(e.message, "bad"); }
    });
  }
  document.querySelectorAll("input[data-toggle-rule]").forEach(bindToggle);
  const form = document.getElementById("rule-form");
  if (form) form.addEventListener("submit", async function (e) {
    e.preventDefault();
    const f = new FormData(form);
    const body = { name: f.get("name"), kind: f.get("kind"), scope: f.get("scope"), severity: f.get("severity"),
      duration_seconds: Number(f.get("duration_seconds") || 0), cooldown_seconds: Number(f.get("cooldown_seconds") || 0),
      auto_resolve: f.get("auto_resolve") === "on", notify_on_resolve: f.get("notify_on_resolve") === "on",
      channels: f.getAll("channels").map(Number), enabled: true };
    if (f.get("scope") === "tags") body.tags = String(f.get("tags") || "").split(",").map(function (t) { return t.trim(); }).filter(Boolean);
    if (f.get("name_regex")) body.name_regex = f.get("name_regex");
    if (f.get("threshold")) { body.threshold = Number(f.get("threshold")); body.threshold_unit = f.get("threshold_unit"); }
    try {
      const r = await D.api("POST", "/api/v1/alert-rules/", body);
      const tbody = document.querySelector("#rules-table tbody"), tr = document.createElement("tr");
      tr.dataset.rule = r.id;
      tr.innerHTML = "<td>" + esc(r.name) + '</td><td class="small mono">' + esc(r.kind) + '</td><td class="hide-sm small">' + esc(r.scope) + '</td><td class="hide-sm small">' +
        (r.threshold != null ? "&gt; " + esc(r.threshold) + " " + esc(r.threshold_unit) : "") + (r.duration_seconds ? " for " + r.duration_seconds + "s" : "") + " · cooldown " + r.cooldown_seconds + 's</td><td class="hide-sm small">' +
        esc((r.channels || []).join(", ") || "–") + '</td><td><input type="checkbox" data-toggle-rule checked aria-label="Enable ' + esc(r.name) + '"></td>';
      tbody.appendChild(tr); bindToggle(tr.querySelector("input"));
      D.toast("Rule created", "ok"); form.reset();
    } catch (err) { D.toast("Not created: " + err.message, "bad"); }
  });
  const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  function localTime(iso) { return new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }); }
  document.querySelectorAll("#windows-table [data-utc]").forEach(function (span) { if (span.dataset.utc) span.textContent = localTime(span.dataset.utc); });
  const windows = document.getElementById("windows-table");
  if (windows) windows.addEventListener("click", async function (ev) {
    const button = ev.target.closest("button[data-delete-window]"); if (!button) return;
    const tr = button.closest("tr"), id = tr.dataset.window;
    const answer = await D.confirm({ title: "Delete this maintenance window?", text: tr.cells[0].textContent.trim() +
      ": alerts it holds now are sent at once if they are still open.", confirm: "Delete", danger: true });
    if (!answer.ok) return;
    try { await D.api("DELETE", "/api/v1/maintenance-windows/" + id + "/"); tr.remove(); D.toast("Window deleted", "ok"); }
    catch (e) { D.toast("Not deleted: " + e.message, "bad"); }
  });
  const windowForm = document.getElementById("window-form");
  if (windowForm) {
    const el = windowForm.elements;
    function localZone() { try { el.timezone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { /* keep UTC */ } }
    localZone();
    function showRecurrence() {
      // app.css makes [hidden] win over .toolbar's display.
      windowForm.querySelectorAll("[data-for]").forEach(function (box) { box.hidden = box.dataset.for !== el.recurrence.value; });
    }
    el.recurrence.addEventListener("change", showRecurrence); showRecurrence();
    windowForm.addEventListener("submit", async function (e) {
      e.preventDefault();
      const body = { name: el.name.value, recurrence: el.recurrence.value, enabled: true, host: null, container: null };
      const target = el.target.value;
      if (target.startsWith("host:")) body.host = target.slice(5);
      if (target.startsWith("container:")) body.container = target.slice(10);
      if (body.recurrence === "once") {
        // datetime-local is the browser's wall-clock time; the API takes an instant.
        body.starts_at = el.starts_at.value ? new Date(el.starts_at.value).toISOString() : null;
        body.ends_at = el.ends_at.value ? new Date(el.ends_at.value).toISOString() : null;
      } else {
        body.weekdays = Array.from(windowForm.querySelectorAll("input[name=weekdays]:checked")).map(function (b) { return Number(b.value); });
        body.start_time = el.start_time.value || null;
        body.duration_minutes = Number(el.duration_minutes.value || 0);
        body.timezone = el.timezone.value;
      }
      try {
        const w = await D.api("POST", "/api/v1/maintenance-windows/", body);
        const tbody = windows.querySelector("tbody"), tr = document.createElement("tr");
        const empty = tbody.querySelector(".empty"); if (empty) empty.remove();
        tr.dataset.window = w.id;
        const covers = el.target.value ? el.target.options[el.target.selectedIndex].textContent.replace(/^(Host|Container) /, "") : "all hosts";
        const when = w.recurrence === "weekly" ? "weekly " + w.weekdays.map(function (d) { return DAYS[d]; }).join(", ") + " at " + String(w.start_time).slice(0, 5) + " for " + w.duration_minutes + " min (" + w.timezone + ")"
          : localTime(w.starts_at) + " → " + localTime(w.ends_at);
        tr.innerHTML = "<td>" + esc(w.name) + '</td><td class="small">' + esc(covers) + '</td><td class="small">' + esc(when) + '</td><td class="small">' +
          (w.active_now ? '<span class="badge warning">active</span>' : "–") + '</td><td class="small">' + (windows.dataset.canDelete === "1" ? '<button type="button" data-delete-window>Delete</button>' : "") + "</td>";
        tbody.appendChild(tr);
        D.toast("Window created", "ok"); windowForm.reset(); localZone(); showRecurrence();
      } catch (err) { D.toast("Not created: " + err.message, "bad"); }
    });
  }
  function live(d, msg) {
    D.toast((msg.type === "alert.fired" ? "Alert: " : "Resolved: ") + (d.title || d.message || ""), msg.type === "alert.fired" ? "bad" : "ok");
    if (d.alert) refresh(d.alert);
  }
  D.on("alert.fired", live); D.on("alert.resolved", live);
})();
