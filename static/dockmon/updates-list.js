/* The Updates page (templates/updates/list.html): Check now with live progress, bulk update, live runs. */
(function () {
  const D = window.DockMon, esc = D.esc;
  const LABELS = {ok: "Up to date", update_available: "Update available", registry_error: "Registry error", pinned: "Pinned to a digest",
                  local_image: "Local image (no registry)", unsupported: "Cannot be checked", unchecked: "Not checked yet"};
  // `early` holds the check events that arrive while the request starting the check is still out
  // (a worker may begin before the answer with the check's id is back); they are replayed then.
  let check = null, expected = 0, seen = new Set(), hostDone = {}, early = null;
  const bar = document.getElementById("check-bar"), text = document.getElementById("check-text"), box = document.getElementById("check-progress");
  function checked() { return seen.size + Object.values(hostDone).reduce(function (a, b) { return a + b; }, 0); }
  function progressText() { const n = checked(); text.textContent = n + " / " + expected + " checked"; bar.max = Math.max(expected, 1); bar.value = n; }
  document.getElementById("check-now").addEventListener("click", async function () {
    const btn = this; btn.disabled = true; early = [];
    try {
      const r = await D.api("POST", "/api/v1/updates/check/", {});
      check = r.check; expected = r.containers; seen = new Set(); hostDone = {}; box.hidden = false; progressText();
      const replay = early; early = null; replay.forEach(handle);
    } catch (e) { early = null; D.toast(e.message || String(e), "bad"); btn.disabled = false; }
  });
  D.on("update.check", function (d) { if (early) { early.push(d); return; } handle(d); });
  function handle(d) {
    if (!check || d.check !== check) return;
    if (d.stage === "container") {
      seen.add(d.key); progressText();
      const tr = document.querySelector('#available tr[data-key="' + CSS.escape(d.key) + '"]');
      if (tr) {
        tr.querySelector(".status").innerHTML = '<span class="badge ' + (d.update_available ? "update" : (d.status === "registry_error" ? "error" : "info")) + '" title="' + esc(d.error) + '">' + esc(LABELS[d.status] || d.status) + "</span>";
        tr.querySelector(".checked").textContent = "just now";
      }
    } else if (d.stage === "host") {
      hostDone[d.host] = d.done || 0; progressText();
    }
    if (d.stage === "finished" || (expected && checked() >= expected)) {
      bar.value = bar.max;
      text.textContent = "Check finished" + (d.updates != null ? ": " + d.updates + " update(s)" : "") + " — reload to see new offers";
      document.getElementById("check-now").disabled = false;
      if (d.stage === "finished") check = null;  // until then its total may still come
    }
  }
  // Bulk update of the selection
  const picks = Array.from(document.querySelectorAll("input.pick")), bulk = document.getElementById("update-selected");
  function refresh() { bulk.disabled = !picks.some(function (p) { return p.checked; }); }
  picks.forEach(function (p) { p.addEventListener("change", refresh); });
  document.getElementById("select-all").addEventListener("change", function () { const on = this.checked; picks.forEach(function (p) { p.checked = on; }); refresh(); });
  bulk.addEventListener("click", async function () {
    const chosen = picks.filter(function (p) { return p.checked; });
    const force = chosen.some(function (p) { return p.dataset.policy === "warn"; });
    if (force && !confirm("Some selected containers have the warn policy. Update them anyway?")) return;
    bulk.disabled = true;
    try {
      const r = await D.api("POST", "/api/v1/update-runs/bulk/", {containers: chosen.map(function (p) { return p.value; }), force: force});
      r.runs.forEach(function (run) { upsert({run: run.run, name: run.container_name, key: run.old_key, status: run.status, stage: run.stage, percent: 0}); });
      D.toast(r.runs.length + " update(s) started" + (r.refused.length ? ", " + r.refused.length + " refused: " + r.refused.map(function (x) { return x.error; }).join("; ") : ""), r.refused.length ? "bad" : "ok");
    } catch (e) { D.toast(e.message || String(e), "bad"); }
    refresh();
  });
  // Live runs
  function upsert(d) {
    const body = document.querySelector("#runs tbody");
    let tr = body.querySelector('tr[data-run="' + d.run + '"]');
    if (!tr) {
      const empty = body.querySelector(".empty"); if (empty) empty.remove();
      tr = document.createElement("tr"); tr.dataset.run = d.run;
      tr.innerHTML = '<td><a href="' + esc(D.url("/api/v1/update-runs/" + d.run + "/")) + '">#' + esc(String(d.run)) + '</a></td><td><a href="' + esc(D.url("/containers/" + d.key + "/")) + '">' + esc(d.name || d.key) + '</a></td><td class="small muted">now</td><td class="st"></td><td class="stage small"></td><td class="hide-sm small"></td><td class="hide-sm mono small"></td><td class="small why"></td>';
      body.insertBefore(tr, body.firstChild);
    }
    if (d.status) tr.querySelector(".st").innerHTML = '<span class="badge ' + esc(d.status) + '">' + esc(d.status) + "</span>";
    tr.querySelector(".stage").innerHTML = esc(d.stage || "") + (d.percent != null && d.percent < 100 ? ' <progress max="100" value="' + Number(d.percent) + '"></progress>' : "");
    if (d.why != null) tr.querySelector(".why").textContent = d.why;
  }
  D.on("update.progress", function (d) { upsert({run: d.run, key: d.key, name: d.name, status: "running", stage: d.stage, percent: d.percent}); });
  ["update.succeeded", "update.failed", "update.rolled_back"].forEach(function (type) {
    D.on(type, function (d) { upsert({run: d.run, key: d.key, name: d.name, status: d.status, stage: d.stage, percent: 100, why: type === "update.succeeded" ? "" : d.message}); });
  });
})();
