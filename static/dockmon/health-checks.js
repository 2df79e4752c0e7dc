/* The Health checks page (templates/healthchecks/list.html): the check table, add/edit/delete, test now, the response-time chart, live status. */
(function () {
  const D = window.DockMon, esc = D.esc;
  const tbody = document.querySelector("#checks tbody");
  const checks = new Map();
  // Containers whose settings this user may change: their checks get Edit and Delete.
  const changeable = new Set(JSON.parse(document.getElementById("changeable-keys").textContent));
  document.querySelectorAll('#add-form select[name=container] option').forEach(function (o) { changeable.add(o.value); });
  let current = null, range = "24h";

  function row(c) {
    const tr = document.createElement("tr");
    tr.dataset.id = c.id;
    tr.innerHTML = '<td><a href="#" class="open">' + esc(c.name || c.url) + '</a><div class="small muted mono">' + esc(c.method) + " " + esc(c.url) + "</div></td>" +
      '<td><a href="' + D.prefix() + '/containers/' + esc(c.container) + '/">' + esc(c.container_name) + "</a></td>" +
      '<td><span class="badge status ' + esc(c.status) + '">' + esc(c.enabled ? c.status : "disabled") + "</span></td>" +
      '<td class="hide-sm docker-health"><span class="badge ' + esc(c.container_health) + '">' + esc(c.container_health) + "</span></td>" +
      '<td class="rt">' + (c.last_response_ms != null ? c.last_response_ms + " ms" : "–") + (c.last_status_code ? ' <span class="small muted">' + c.last_status_code + "</span>" : "") + "</td>" +
      '<td class="hide-sm small muted last">' + (c.last_checked_at ? D.ago(c.last_checked_at) : "never") + "</td>" +
      '<td class="hide-sm fails">' + c.consecutive_failures + "</td>" +
      '<td class="small"><button type="button" class="test small">Test now</button>' +
      (changeable.has(c.container) ? ' <button type="button" class="edit small">Edit</button> <button type="button" class="delete small">Delete</button>' : "") + "</td>";
    if (c.last_error) tr.title = c.last_error;
    return tr;
  }
  function render() {
    tbody.innerHTML = "";
    if (!checks.size) { tbody.innerHTML = '<tr class="empty"><td colspan="8" class="muted">No health checks yet.</td></tr>'; }
    checks.forEach(function (c) { tbody.appendChild(row(c)); });
    const values = Array.from(checks.values());
    document.getElementById("summary").textContent = values.filter(function (c) { return c.status === "healthy"; }).length + " healthy, " +
      values.filter(function (c) { return c.status === "unhealthy"; }).length + " unhealthy, " + values.length + " in all";
  }
  async function load() {
    const data = await D.api("GET", "/api/v1/health-checks/?page_size=500");
    checks.clear(); data.results.forEach(function (c) { checks.set(String(c.id), c); }); render();
  }
  async function showDetail(id) {
    current = id; const c = checks.get(String(id)); if (!c) return;
    document.getElementById("detail").hidden = false;
    document.getElementById("detail-title").textContent = (c.name || c.url) + " — " + c.container_name;
    document.querySelectorAll("#detail [data-range]").forEach(function (b) { b.classList.toggle("primary", b.dataset.range === range); });
    document.getElementById("detail-settings").textContent = "expect " + c.expected_status + (c.body_keyword ? ", body contains \u201c" + c.body_keyword + "\u201d" : "") +
      ", every " + c.interval_seconds + " s, timeout " + c.timeout_seconds + " s, unhealthy after " + c.failure_threshold + ", healthy after " + c.success_threshold +
      (c.follow_redirects ? ", follows redirects" : ", no redirects") + (c.verify_tls ? (c.tls_ca ? ", TLS verified with its own CA" : ", TLS verified") : ", TLS not verified") +
      (c.basic_auth_user ? ", basic auth as " + c.basic_auth_user : "") + (c.header_names && c.header_names.length ? ", headers " + c.header_names.join(", ") : "") +
      (c.auto_restart ? ", auto-restart" : "") + (c.enabled ? "" : ", disabled");
    const data = await D.api("GET", "/api/v1/health-checks/" + id + "/results/?range=" + range);
    const s = data.summary;
    document.getElementById("detail-summary").textContent = s.count + " checks, " + (s.uptime_percent != null ? s.uptime_percent + " % up" : "no data") +
      (s.avg_response_ms != null ? ", average " + s.avg_response_ms + " ms, max " + s.max_response_ms + " ms" : "");
    D.chart(document.getElementById("detail-chart"), data.points.filter(function (p) { return p.response_ms != null; }).map(function (p) { return { t: p.ts, v: p.response_ms }; }), { cls: "cpu", label: function (t) { return t.toFixed(0) + " ms"; } });
  }

  const form = document.getElementById("add-form");
  const errors = document.getElementById("form-errors");
  function parseHeaders(text) {
    const out = {};
    String(text || "").split("\n").forEach(function (line) {
      line = line.trim(); if (!line) return;
      const at = line.indexOf(":");
      if (at < 1) throw new Error("headers: write each one as Name: value (" + line + ")");
      out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    });
    return out;
  }
  function resetForm() {
    form.reset(); form.elements.id.value = ""; form.elements.container.disabled = false; errors.textContent = "";
    form.elements.basic_auth_password.placeholder = "password";
    document.getElementById("form-title").textContent = "Add a check";
    document.getElementById("form-submit").textContent = "Add";
    document.getElementById("form-cancel").hidden = true;
    document.getElementById("header-names").textContent = "";
    document.getElementById("clear-headers-label").hidden = true;
  }
  function editCheck(c) {
    resetForm();
    const el = form.elements;
    el.id.value = c.id; el.container.value = c.container; el.container.disabled = true;
    ["name", "url", "method", "expected_status", "body_keyword", "interval_seconds", "timeout_seconds", "failure_threshold",
     "success_threshold", "basic_auth_user", "tls_ca"].forEach(function (k) { el[k].value = c[k] == null ? "" : c[k]; });
    ["follow_redirects", "verify_tls", "auto_restart", "enabled"].forEach(function (k) { el[k].checked = !!c[k]; });
    el.basic_auth_password.placeholder = c.has_basic_auth_password ? "stored (blank keeps it)" : "password";
    if (c.header_names && c.header_names.length) {
      document.getElementById("header-names").textContent = "Stored: " + c.header_names.join(", ") + " (blank keeps them). ";
      document.getElementById("clear-headers-label").hidden = false;
    }
    document.getElementById("form-title").textContent = "Edit " + (c.name || c.url);
    document.getElementById("form-submit").textContent = "Save";
    document.getElementById("form-cancel").hidden = false;
    document.getElementById("add-panel").open = true;
    el.url.focus();
  }
  tbody.addEventListener("click", async function (e) {
    const tr = e.target.closest("tr"); if (!tr || !tr.dataset.id) return;
    const id = tr.dataset.id, c = checks.get(id);
    if (e.target.classList.contains("open")) { e.preventDefault(); showDetail(id); }
    if (e.target.classList.contains("edit") && form) editCheck(c);
    if (e.target.classList.contains("delete")) {
      const answer = await D.confirm({ title: "Delete this health check?", text: (c.name || c.url) + " on " + c.container_name +
        " and its history are removed for good.", confirm: "Delete", danger: true });
      if (!answer.ok) return;
      try {
        await D.api("DELETE", "/api/v1/health-checks/" + id + "/");
        checks.delete(id); render(); D.toast("Check deleted.", "ok");
        if (String(current) === id) { document.getElementById("detail").hidden = true; current = null; }
        if (form && form.elements.id.value === id) resetForm();
      } catch (err) { D.toast("Not deleted: " + err.message, "bad"); }
    }
    if (e.target.classList.contains("test")) {
      e.target.disabled = true;
      try {
        const r = await D.api("POST", "/api/v1/health-checks/" + id + "/test/");
        D.toast(r.ok ? "OK: " + r.status_code + " in " + r.response_ms + " ms" : "Failed: " + r.error, r.ok ? "ok" : "bad");
        if (r.check) { checks.set(String(r.check.id), r.check); render(); }
        if (String(current) === id) showDetail(current);
      } catch (err) { D.toast(err.message, "bad"); } finally { e.target.disabled = false; }
    }
  });
  document.querySelectorAll("#detail [data-range]").forEach(function (b) { b.addEventListener("click", function () { range = b.dataset.range; showDetail(current); }); });
  if (form) {
    document.getElementById("form-cancel").addEventListener("click", resetForm);
    form.addEventListener("submit", async function (e) {
      e.preventDefault();
      errors.textContent = "";
      const el = form.elements, id = el.id.value;
      const body = { name: el.name.value, url: el.url.value, method: el.method.value, expected_status: el.expected_status.value,
        body_keyword: el.body_keyword.value, interval_seconds: Number(el.interval_seconds.value),
        timeout_seconds: Number(el.timeout_seconds.value), failure_threshold: Number(el.failure_threshold.value),
        success_threshold: Number(el.success_threshold.value), follow_redirects: el.follow_redirects.checked,
        verify_tls: el.verify_tls.checked, auto_restart: el.auto_restart.checked, enabled: el.enabled.checked,
        basic_auth_user: el.basic_auth_user.value, tls_ca: el.tls_ca.value };
      if (el.basic_auth_password.value) body.basic_auth_password = el.basic_auth_password.value;
      try {
        if (el.headers.value.trim()) body.headers = parseHeaders(el.headers.value);
        else if (el.clear_headers.checked) body.headers = {};
        if (!id) body.container = el.container.value;
        const c = await D.api(id ? "PATCH" : "POST", "/api/v1/health-checks/" + (id ? id + "/" : ""), body);
        checks.set(String(c.id), c); render();
        D.toast(id ? "Check saved." : "Check added.", "ok"); resetForm();
        // Secrets follow their destination: a check pointed elsewhere drops those not given again.
        if (c.secrets_cleared && c.secrets_cleared.length) {
          D.toast("The check now points elsewhere: its stored " + c.secrets_cleared.map(function (n) {
            return n === "headers" ? "header values" : "basic-auth password"; }).join(" and ") + " were removed; enter them again if they belong there.", "bad");
        }
        if (String(current) === String(c.id)) showDetail(current);
      } catch (err) {
        errors.textContent = err.message;
        D.toast((id ? "Not saved: " : "Not added: ") + err.message, "bad");
      }
    });
  }
  D.on("health.status", function (d) {
    const c = checks.get(String(d.check)); if (!c) { load(); return; }
    c.status = d.status;
    if (d.response_ms != null) c.last_response_ms = d.response_ms;
    c.last_checked_at = new Date().toISOString(); c.last_error = d.error || "";
    if (d.consecutive_failures != null) c.consecutive_failures = d.consecutive_failures;
    render();
    if (String(current) === String(d.check)) showDetail(current);
  });
  D.on("container.state", function (d) { checks.forEach(function (c) { if (c.container === d.key && d.health) { c.container_health = d.health; } }); render(); });
  load().catch(function (err) { D.toast(err.message, "bad"); });
  setInterval(function () { load().catch(function () {}); }, 30000);  // response times of healthy checks (no status change, no event)
})();
