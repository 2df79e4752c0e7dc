/* The updates panel of the container page (templates/updates/_container_updates.html): Update button, live progress, history. */
(function () {
  const D = window.DockMon, esc = D.esc, panel = document.getElementById("updates-panel");
  let key = panel.dataset.key, runId = panel.dataset.activeRun ? Number(panel.dataset.activeRun) : null;  // the run in progress, if any
  const bar = document.getElementById("update-bar"), box = document.getElementById("update-progress");
  function row(d) {
    let tr = document.querySelector('#update-runs tr[data-run="' + d.run + '"]');
    if (!tr) {
      const body = document.getElementById("update-runs"), empty = body.querySelector(".empty"); if (empty) empty.remove();
      tr = document.createElement("tr"); tr.dataset.run = d.run; body.insertBefore(tr, body.firstChild);
      tr.innerHTML = "<td>#" + esc(String(d.run)) + "</td><td>now</td><td></td><td></td><td class=\"mono\"></td><td></td>";
    }
    return tr;
  }
  function mine(d) { return d && (d.run === runId || d.key === key || d.old_key === key || d.new_key === key); }
  D.on("update.progress", function (d) {
    if (!mine(d)) return;
    runId = d.run; box.hidden = false; bar.value = d.percent;
    document.getElementById("update-stage").textContent = d.stage;
    document.getElementById("update-message").textContent = d.message || "";
    const tr = row(d); tr.children[2].innerHTML = '<span class="badge running">running</span>'; tr.children[3].textContent = d.stage;
  });
  ["update.succeeded", "update.failed", "update.rolled_back"].forEach(function (type) {
    D.on(type, function (d) {
      if (!mine(d)) return;
      const tr = row(d); tr.children[2].innerHTML = '<span class="badge ' + esc(d.status) + '">' + esc(d.status) + "</span>";
      tr.children[3].textContent = d.stage; tr.children[4].textContent = (d.to_digest || "").slice(0, 19);
      tr.children[5].textContent = type === "update.succeeded" ? "" : (d.message || "");
      bar.value = 100; D.toast(d.message, type === "update.succeeded" ? "ok" : "bad");
      const btn = document.getElementById("update-btn"); if (btn) btn.disabled = false;
      if (type === "update.succeeded" && d.new_key && d.new_key !== key) {
        setTimeout(function () { location.href = D.url("/containers/" + encodeURIComponent(d.new_key) + "/"); }, 1500);
      }
    });
  });
  const btn = document.getElementById("update-btn");
  if (btn) btn.addEventListener("click", async function () {
    const force = panel.dataset.policy === "warn";
    if (force && !confirm("The update policy is warn. Update anyway?")) return;
    btn.disabled = true;
    try {
      const run = await D.api("POST", "/api/v1/containers/" + encodeURIComponent(key) + "/update/", {force: force});
      runId = run.run; box.hidden = false; bar.value = 0;
      document.getElementById("update-stage").textContent = run.stage;
      row(run).children[2].innerHTML = '<span class="badge pending">pending</span>';
      D.toast("Update #" + run.run + " started", "ok");
    } catch (e) { btn.disabled = false; D.toast(e.message || String(e), "bad"); }
  });
})();
