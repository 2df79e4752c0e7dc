/* The container page (templates/containers/detail.html): actions, settings, stats charts, logs, live profiler, events. */
(function () {
  const D = window.DockMon, esc = D.esc;
  const key = JSON.parse(document.getElementById("container-key").textContent);
  const base = "/api/v1/containers/" + key;
  let state = document.getElementById("state").textContent;

  function showState(d) {
    if (d.state) { const s = document.getElementById("state"); s.className = "badge " + d.state; s.textContent = d.state; state = d.state; }
    if (d.health) { const h = document.getElementById("health"); h.className = "badge " + d.health; h.textContent = d.health; }
    if (d.status != null) document.getElementById("status").textContent = d.status;
  }
  const WARN = { stop: "The container stops (SIGTERM, then SIGKILL after the timeout).", restart: "The container stops and starts again.",
                 kill: "The container gets SIGKILL at once: no clean shutdown." };
  document.querySelectorAll("#actions [data-op]").forEach(function (button) {
    button.addEventListener("click", async function () {
      const op = button.dataset.op;
      let options = {};
      if (op === "remove") {
        const answer = await D.confirm({ title: "Remove this container?", text: "It is deleted from the engine; this cannot be undone.", confirm: "Remove", danger: true,
          options: [{ name: "force", label: "Force: stop it first if it is running", checked: state === "running" || state === "paused" || state === "restarting" },
                    { name: "volumes", label: "Also remove its anonymous volumes" }] });
        if (!answer.ok) return;
        options = answer.values;
      } else if (button.dataset.confirm) {
        const answer = await D.confirm({ title: op.charAt(0).toUpperCase() + op.slice(1) + " this container?", text: WARN[op] || "", confirm: op, danger: op === "kill" || op === "stop" });
        if (!answer.ok) return;
      }
      button.disabled = true;
      try {
        if (op === "remove") {
          await D.api("DELETE", base + "/?force=" + !!options.force + "&volumes=" + !!options.volumes);
          D.toast("Removed.", "ok"); location.href = D.url("/containers/"); return;
        }
        showState(await D.api("POST", base + "/" + op + "/"));
        D.toast(op + ": done", "ok");
      } catch (err) { D.toast(op + " failed: " + err.message, "bad"); } finally { button.disabled = false; }
    });
  });
  D.on("container.state", function (d) { if (d.key === key) showState(d); });
  D.on("container.removed", function (d) { if (d.key === key) { showState({ state: "removed" }); D.toast("This container was removed.", "bad"); } });
  D.on("container.recreated", function (d) { if (d.old_key === key) { D.toast("Recreated — opening the new container.", "ok"); location.href = D.url("/containers/" + d.new_key + "/"); } });
  D.on("*", function (d, msg) {
    if (!d || d.key !== key || !d.message || ["container.log", "profile.sample", "stats.sample"].indexOf(msg.type) >= 0) return;
    const body = document.getElementById("events"), empty = body.querySelector(".empty"); if (empty) empty.remove();
    const tr = document.createElement("tr");
    tr.innerHTML = '<td class="small muted" data-ago="' + esc(msg.ts) + '">' + D.ago(msg.ts) + '</td><td><span class="badge ' + esc(d.severity || "info") + '">' + esc(msg.type) + "</span></td><td>" + esc(d.message) + "</td>";
    body.insertBefore(tr, body.firstChild);
  });

  // --- settings: read from GET …/settings/, saved with one PATCH of the fields this user may
  // change. The per-container update policy is the updates app's own object
  // (/api/v1/update-policies/) unless the settings endpoint offers it as a field.
  const form = document.getElementById("settings-form");
  const el = { tags: document.getElementById("tags-input"), desired: document.getElementById("desired"), policy: document.getElementById("update-policy"),
               autoUpdate: document.getElementById("auto-update"), autoRestart: document.getElementById("auto-restart") };
  let current = null, policyId = el.policy.dataset.policyId || null;
  function showTags(tags) {
    document.getElementById("tags").innerHTML = tags.map(function (t) { return '<span class="badge tag">' + esc(t) + "</span>"; }).join(" ") || '<span class="muted small">No tags.</span>';
  }
  function fill(s) {
    current = s;
    if ("tags" in s) el.tags.value = s.tags.join(", ");
    if ("desired_state" in s) el.desired.value = s.desired_state || "";
    el.policy.value = "update_policy" in s ? (s.update_policy || "") : el.policy.dataset.policy;
    el.autoUpdate.closest("span").previousElementSibling.hidden = el.autoUpdate.closest("span").hidden = !("auto_update" in s);
    el.autoRestart.closest("span").previousElementSibling.hidden = el.autoRestart.closest("span").hidden = !("auto_restart" in s);
    if ("auto_update" in s) el.autoUpdate.checked = !!s.auto_update;
    if ("auto_restart" in s) el.autoRestart.checked = !!s.auto_restart;
    form.dataset.loaded = "1";
  }
  D.api("GET", base + "/settings/").then(fill).catch(function (err) { document.getElementById("settings-info").textContent = "Settings unavailable: " + err.message; });
  async function savePolicy(value) {
    if (value === el.policy.dataset.policy) return;
    if (!value) { if (policyId) await D.api("DELETE", "/api/v1/update-policies/" + policyId + "/"); policyId = null; }
    else if (policyId) await D.api("PATCH", "/api/v1/update-policies/" + policyId + "/", { policy: value });
    else policyId = (await D.api("POST", "/api/v1/update-policies/", { container: key, policy: value })).id;
    el.policy.dataset.policy = value;
  }
  form.addEventListener("submit", async function (e) {
    e.preventDefault();
    if (!current) return;
    const body = {};
    if (!el.tags.disabled) body.tags = el.tags.value.split(",").map(function (t) { return t.trim(); }).filter(Boolean);
    if (!el.desired.disabled) body.desired_state = el.desired.value;
    if ("auto_restart" in current && !el.autoRestart.disabled) body.auto_restart = el.autoRestart.checked;
    if ("auto_update" in current && !el.autoUpdate.disabled) body.auto_update = el.autoUpdate.checked;
    if ("update_policy" in current && !el.policy.disabled) body.update_policy = el.policy.value;
    const info = document.getElementById("settings-info");
    info.textContent = "Saving…";
    try {
      if (!("update_policy" in current) && !el.policy.disabled) await savePolicy(el.policy.value);
      const data = await D.api("PATCH", base + "/settings/", body);
      fill(data);
      if (data.tags) showTags(data.tags);
      info.textContent = "Saved.";
      D.toast("Settings saved.", "ok");
    } catch (err) { info.textContent = ""; D.toast("Not saved: " + err.message, "bad"); }
  });

  // --- stats charts: the range buttons ask the stats API; the 1 h chart grows live.
  let range = "1h", points = [];
  function drawStats() {
    D.chart(document.getElementById("chart-cpu"), points.map(function (p) { return { t: p.t, v: p.cpu_percent, min: p.cpu_min, max: p.cpu_max }; }), { cls: "cpu", label: D.pct });
    D.chart(document.getElementById("chart-mem"), points.map(function (p) { return { t: p.t, v: p.mem_bytes, min: p.mem_min, max: p.mem_max }; }), { cls: "mem", label: D.bytes, bytes: true });
  }
  async function loadStats(r) {
    range = r;
    document.querySelectorAll("[data-range]").forEach(function (b) { const on = b.dataset.range === r; b.classList.toggle("primary", on); b.setAttribute("aria-pressed", on); });
    try {
      const data = await D.api("GET", base + "/stats/?range=" + r);
      if (range !== r) return;  // a later click won
      points = data.points; drawStats();
    } catch (err) { D.toast(err.message, "bad"); }
  }
  document.querySelectorAll("[data-range]").forEach(function (b) { b.addEventListener("click", function () { loadStats(b.dataset.range); }); });
  loadStats("1h");
  D.onOpen(function () { D.send({ action: "stats.subscribe", keys: [key] }); });
  D.on("stats.sample", function (d) {
    if (range !== "1h") return;
    d.samples.forEach(function (s) {
      if (s.key !== key) return;
      points.push({ t: d.t, cpu_percent: s.cpu_percent, cpu_min: s.cpu_percent, cpu_max: s.cpu_percent, mem_bytes: s.mem_bytes, mem_min: s.mem_bytes, mem_max: s.mem_bytes });
      if (points.length > 400) points.shift();
      drawStats();
    });
  });

  // --- logs: the last lines, live follow, a filter over what is shown, download as text.
  const logs = document.getElementById("logs");
  if (logs) {
    const search = document.getElementById("log-search"), count = document.getElementById("log-count");
    function counted() {
      const q = search.value.trim();
      count.textContent = q ? logs.querySelectorAll("div:not(.hidden)").length + " of " + logs.childNodes.length + " lines" : "";
    }
    function addLine(line) {
      const div = document.createElement("div");
      if (line.stream === "stderr") div.className = "stderr";
      div.innerHTML = '<span class="ts">' + esc(line.ts ? line.ts.slice(11, 23) : "") + "</span> " + esc(line.text);
      div.dataset.text = line.text.toLowerCase();
      const q = search.value.trim().toLowerCase();
      if (q && div.dataset.text.indexOf(q) < 0) div.classList.add("hidden");
      const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 40;
      logs.appendChild(div);
      while (logs.childNodes.length > 5000) logs.removeChild(logs.firstChild);
      if (atBottom) logs.scrollTop = logs.scrollHeight;
      if (q) counted();
    }
    search.addEventListener("input", function () {
      const q = search.value.trim().toLowerCase();
      logs.querySelectorAll("div").forEach(function (d) { d.classList.toggle("hidden", !!q && d.dataset.text.indexOf(q) < 0); });
      counted();
    });
    D.api("GET", base + "/logs/?tail=200").then(function (data) { data.lines.forEach(addLine); logs.dataset.loaded = "1"; })
      .catch(function (err) { addLine({ stream: "stderr", text: "Logs unavailable: " + err.message }); });
    D.on("container.log", function (d) { if (d.key === key) addLine(d); });
    const follow = document.getElementById("follow");
    follow.addEventListener("change", function () { D.send({ action: follow.checked ? "logs.follow" : "logs.unfollow", key: key }); });
    D.onOpen(function () { if (follow.checked) D.send({ action: "logs.follow", key: key }); });
  }

  // --- live profiler, and the saved sessions (replay draws a session's samples; CSV/JSON export).
  let session = null, prof = [];
  const startBtn = document.getElementById("profile-start"), stopBtn = document.getElementById("profile-stop"), info = document.getElementById("profile-info");
  function drawProfile(samples, label) {
    const empty = label === "live" ? "Waiting for the first sample…" : "Start profiling (1-second samples) or replay a saved session";
    D.chart(document.getElementById("profile-cpu"), samples.map(function (p) { return { t: p.t, v: p.cpu_percent }; }), { cls: "cpu", label: D.pct, empty: empty });
    D.chart(document.getElementById("profile-mem"), samples.map(function (p) { return { t: p.t, v: p.mem_bytes }; }), { cls: "mem", label: D.bytes, bytes: true, empty: empty });
    document.getElementById("profiler").dataset.showing = label;
  }
  drawProfile([], "");
  startBtn.addEventListener("click", function () { prof = []; D.send({ action: "profile.start", key: key }); startBtn.disabled = true; info.textContent = "Starting…"; });
  stopBtn.addEventListener("click", function () { if (session) D.send({ action: "profile.stop", session: session }); stopBtn.disabled = true; });
  D.on("profile.started", function (d) { if (d.key !== key) return; session = d.session; stopBtn.disabled = false; info.textContent = "Session " + d.session + " recording…"; drawProfile([], "live"); });
  D.on("profile.stopped", function (d) {
    if (d.session !== session) return;
    session = null; startBtn.disabled = false; stopBtn.disabled = true;
    info.textContent = "Saved session " + d.session + " (" + d.reason + "), " + prof.length + " samples.";
    loadSessions();
  });
  D.on("profile.sample", function (d) {
    if (d.session !== session) return;
    prof.push(d); if (prof.length > 600) prof.shift();
    info.textContent = "Session " + d.session + " recording… " + prof.length + " samples";
    drawProfile(prof, "live");
  });
  D.on("error", function (d) { if (d.key === key || d.session) { D.toast(d.message, "bad"); startBtn.disabled = !!session; if (!session) info.textContent = ""; } });

  const COLUMNS = ["t", "cpu_percent", "mem_bytes", "mem_limit", "net_rx", "net_tx", "blk_read", "blk_write", "pids"];
  function asSample(row) {
    if (!Array.isArray(row)) return row;
    const out = {}; COLUMNS.forEach(function (c, i) { out[c] = row[i]; }); return out;
  }
  function seconds(a, b) {
    if (!b) return "open";
    const s = Math.round((Date.parse(b) - Date.parse(a)) / 1000);
    return s < 120 ? s + " s" : Math.round(s / 60) + " min";
  }
  const sessions = document.querySelector("#profile-sessions tbody");
  async function loadSessions() {
    let data;
    try { data = await D.api("GET", "/api/v1/profiles/?container_key=" + encodeURIComponent(key) + "&page_size=20"); } catch (err) {
      sessions.innerHTML = '<tr class="empty"><td colspan="6" class="muted">Sessions unavailable: ' + esc(err.message) + "</td></tr>"; return;
    }
    const rows = data.results || data;
    sessions.innerHTML = rows.map(function (s) {
      const url = D.url("/api/v1/profiles/" + s.id + "/export/?as=");
      return '<tr data-session="' + s.id + '"><td data-ago="' + esc(s.started_at) + '" title="' + esc(s.started_at) + '">' + D.ago(s.started_at) + "</td><td>" + seconds(s.started_at, s.ended_at) +
        "</td><td>" + s.sample_count + '</td><td class="hide-sm">' + esc(s.end_reason || "") + '</td><td class="hide-sm">' + esc(s.user || "") + "</td>" +
        '<td class="num"><button type="button" class="small replay">Replay</button> <a class="button small csv" href="' + url + 'csv" download>CSV</a> <a class="button small json" href="' + url + 'json" download>JSON</a></td></tr>';
    }).join("") || '<tr class="empty"><td colspan="6" class="muted">No saved sessions yet.</td></tr>';
  }
  sessions.addEventListener("click", async function (e) {
    const button = e.target.closest("button.replay"); if (!button) return;
    const id = button.closest("tr").dataset.session;
    try {
      const s = await D.api("GET", "/api/v1/profiles/" + id + "/");
      const samples = (s.samples || []).map(asSample).sort(function (a, b) { return Date.parse(a.t) - Date.parse(b.t); });
      drawProfile(samples, "session " + id);
      info.textContent = "Replay of session " + id + ": " + samples.length + " samples.";
    } catch (err) { D.toast(err.message, "bad"); }
  });
  loadSessions();
})();
