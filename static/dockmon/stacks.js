/* The Stacks pages (templates/stacks/list.html and detail.html): editors with line numbers, create,
   save (compose's own message on a refusal), the diff before a deploy, actions, the live run log
   and live statuses from `stack.progress`, `stack.succeeded` and `stack.failed`. */
(function () {
  const D = window.DockMon, esc = D.esc;

  // --- editors: a gutter of line numbers beside each textarea --------------------------------
  document.querySelectorAll(".editor").forEach(function (box) {
    const gutter = box.querySelector(".gutter"), area = box.querySelector("textarea");
    function number() {
      const lines = area.value.split("\n").length;
      const rows = [];
      for (let i = 1; i <= lines; i++) rows.push(i);
      gutter.textContent = rows.join("\n");
      gutter.scrollTop = area.scrollTop;
    }
    area.addEventListener("input", number);
    area.addEventListener("scroll", function () { gutter.scrollTop = area.scrollTop; });
    number();
  });

  function showError(el, error) {
    const data = error && error.data;
    const text = data && (data.compose || data.env || data.name || data.host) ? [].concat(data.compose || [], data.env || [], data.name || [], data.host || []).join("\n")
      : (error.message || String(error));
    el.textContent = text; el.hidden = false;
  }

  // --- the list: create a stack ----------------------------------------------------------------
  const create = document.getElementById("new-stack");
  if (create) {
    create.addEventListener("submit", async function (event) {
      event.preventDefault();
      const form = new FormData(create), error = document.getElementById("new-error");
      error.hidden = true;
      try {
        const stack = await D.api("POST", "/api/v1/stacks/", {host: form.get("host"), name: form.get("name"), compose: form.get("compose"), env: form.get("env")});
        window.location.href = D.url("/stacks/" + stack.id + "/");
      } catch (e) { showError(error, e); }
    });
  }

  // Live statuses on the list: a run's progress marks its stack deploying; its end reloads the row.
  async function refreshRow(id) {
    const tr = document.querySelector('#stacks tr[data-stack="' + id + '"]');
    if (!tr) return;
    try {
      const s = await D.api("GET", "/api/v1/stacks/" + id + "/");
      tr.querySelector(".status").innerHTML = '<span class="badge ' + esc(s.status) + '">' + esc(s.status) + "</span>";
    } catch (e) { /* gone or no longer visible: leave the row as it was */ }
  }

  // --- one stack ---------------------------------------------------------------------------------
  const stackId = document.body.dataset.stack;
  const log = document.getElementById("run-log");
  let currentRun = null;

  function setStatus(status) {
    const badge = document.getElementById("stack-status");
    if (badge) { badge.className = "badge " + status; badge.textContent = status; }
  }
  function appendLog(line) {
    if (!log) return;
    log.textContent += (log.textContent && !log.textContent.endsWith("\n") ? "\n" : "") + line;
    log.scrollTop = log.scrollHeight;
  }
  function upsertRun(run) {
    const body = document.querySelector("#runs tbody");
    if (!body) return;
    let tr = body.querySelector('tr[data-run="' + run.run + '"]');
    if (!tr) {
      const empty = body.querySelector(".empty"); if (empty) empty.remove();
      tr = document.createElement("tr"); tr.dataset.run = run.run;
      tr.innerHTML = '<td><a href="' + esc(D.url("/api/v1/stack-runs/" + run.run + "/")) + '">#' + esc(String(run.run)) + "</a></td><td>" + esc(run.kind || "") +
        '</td><td class="small muted">now</td><td class="st"></td><td class="stage small"></td><td class="hide-sm small"></td><td class="small why"></td>';
      body.insertBefore(tr, body.firstChild);
    }
    if (run.status) tr.querySelector(".st").innerHTML = '<span class="badge ' + esc(run.status) + '">' + esc(run.status) + "</span>";
    if (run.stage) tr.querySelector(".stage").textContent = run.stage;
    if (run.error != null) tr.querySelector(".why").textContent = run.error;
  }
  async function reloadServices() {
    try {
      const s = await D.api("GET", "/api/v1/stacks/" + stackId + "/");
      setStatus(s.status);
      const body = document.querySelector("#services tbody");
      body.innerHTML = s.services.map(function (svc) {
        const links = svc.containers.map(function (key) { return '<a class="mono" href="' + esc(D.url("/containers/" + key + "/")) + '">' + esc(key.slice(37)) + "</a>"; }).join(" ");
        return '<tr data-service="' + esc(svc.name) + '"><td>' + esc(svc.name) + '</td><td class="mono small">' + esc(svc.image) + '</td><td><span class="badge ' + esc(svc.state) + '">' +
          esc(svc.state) + '</span></td><td class="small">' + links + "</td></tr>";
      }).join("") || '<tr class="empty"><td colspan="4" class="muted">No services.</td></tr>';
    } catch (e) { /* the stack was deleted, or is no longer visible */ }
  }

  D.on("stack.progress", function (d) {
    if (!stackId) { setTimeout(function () { refreshRow(d.stack); }, 0); return; }
    if (String(d.stack) !== stackId && String(d.run) !== String(currentRun)) return;
    setStatus("deploying");
    // Compose's lines name their object (a service, a container, a volume) already.
    if (d.message) appendLog("[" + d.stage + "] " + d.message);
    upsertRun({run: d.run, kind: d.kind, status: d.stage === "done" ? "succeeded" : "running", stage: d.stage});
  });
  ["stack.succeeded", "stack.failed", "stack.rolled_back"].forEach(function (type) {
    D.on(type, function (d) {
      if (!stackId) { refreshRow(d.stack); return; }
      if (String(d.stack) !== stackId && String(d.run) !== String(currentRun)) return;
      upsertRun({run: d.run, kind: d.kind, status: d.status, error: type === "stack.succeeded" ? "" : d.message});
      if (d.kind === "delete" && d.status === "succeeded") { window.location.href = D.url("/stacks/"); return; }
      reloadServices();
      const panel = document.getElementById("diff-panel");
      if (panel && !panel.hidden) showDiff();
    });
  });

  if (!stackId) return;

  const edit = document.getElementById("edit-stack");
  if (edit) {
    edit.addEventListener("submit", async function (event) {
      event.preventDefault();
      const form = new FormData(edit), error = document.getElementById("edit-error");
      error.hidden = true;
      try {
        await D.api("PATCH", "/api/v1/stacks/" + stackId + "/", {compose: form.get("compose"), env: form.get("env"), auto_update: form.get("auto_update") === "on"});
        D.toast("Saved: review the diff, then deploy", "ok");
        showDiff();
      } catch (e) { showError(error, e); }
    });
  }

  async function showDiff() {
    const panel = document.getElementById("diff-panel");
    try {
      const rows = await D.api("GET", "/api/v1/stacks/" + stackId + "/diff/");
      panel.querySelector("tbody").innerHTML = rows.map(function (r) {
        return "<tr><td>" + esc(r.service) + '</td><td><span class="badge ' + (r.change === "unchanged" ? "info" : "update") + '">' + esc(r.change) + '</span></td><td class="mono small">' +
          esc(r.image) + '</td><td class="mono small">' + esc(r.running_image) + "</td></tr>";
      }).join("");
      panel.hidden = false;
    } catch (e) { D.toast(e.message || String(e), "bad"); }
  }
  const diffButton = document.getElementById("show-diff");
  if (diffButton) diffButton.addEventListener("click", showDiff);

  document.querySelectorAll("#actions [data-action]").forEach(function (button) {
    button.addEventListener("click", async function () {
      const action = button.dataset.action;
      if ((action === "delete" || action === "down-volumes") && !window.confirm(action === "delete"
        ? "Take the stack down and forget it? Its files are kept in the trash for a week." : "Remove the stack's containers and its named volumes (their data)?")) return;
      // Cleared before asking: a quick worker's first lines may arrive before the answer.
      if (log) log.textContent = "";
      try {
        let run;
        if (action === "delete") run = await D.api("DELETE", "/api/v1/stacks/" + stackId + "/");
        else if (action === "down-volumes") run = await D.api("POST", "/api/v1/stacks/" + stackId + "/down/", {volumes: true});
        else run = await D.api("POST", "/api/v1/stacks/" + stackId + "/" + action + "/");
        currentRun = run.run;
        upsertRun(run);
        if (run.status !== "pending" && run.status !== "running") {
          // A worker that ran it at once (or the request itself): show how it ended.
          appendLog(run.log || "");
          if (run.kind === "delete" && run.status === "succeeded") { window.location.href = D.url("/stacks/"); return; }
          reloadServices();
        }
      } catch (e) { D.toast(e.message || String(e), "bad"); }
    });
  });
})();
