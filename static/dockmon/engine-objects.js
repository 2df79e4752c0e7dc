/* The Images, Volumes and Networks pages (templates/containers/engine_objects.html): the live list
   from the API, removal (the containers that hold an object are named when refused), prune with
   the dry run shown in the confirmation, pulls with `image.pull` progress, and creating volumes
   and networks. The API checks every right; the page only hides buttons nobody could use. */
(function () {
  const D = window.DockMon, esc = D.esc;
  const kind = document.body.dataset.kind;
  const hostNames = JSON.parse(document.getElementById("host-names").textContent);
  const deployHosts = JSON.parse(document.getElementById("deploy-hosts").textContent);
  const filters = document.getElementById("filters");
  const tbody = document.querySelector("#objects tbody");
  const formError = document.getElementById("form-error");

  function showError(e) { formError.textContent = e.message || String(e); formError.hidden = false; }
  function containerLinks(keys) {
    if (!keys.length) return '<span class="muted">unused</span>';
    return keys.map(function (k) {
      const key = typeof k === "string" ? k : k.key;
      const label = typeof k === "string" ? key.split(":")[1] : k.name + (k.ipv4 ? " " + k.ipv4 : "");
      return '<a href="' + esc(D.url("/containers/" + key + "/")) + '">' + esc(label) + "</a>";
    }).join(", ");
  }
  function removeButton(row) {
    if (deployHosts.indexOf(row.host) < 0) return "";
    if (kind === "networks" && ["bridge", "host", "none"].indexOf(row.name) >= 0) return "";
    return '<button type="button" class="small danger" data-remove="' + esc(row.id) + '" data-label="' + esc(label(row)) + '">Remove</button>';
  }
  function label(row) { return kind === "images" ? (row.repo_tags[0] || row.id.split(":")[1]) : row.name; }

  function cells(row) {
    const host = '<td class="small">' + esc(hostNames[row.host] || row.host) + "</td>";
    const created = '<td class="hide-sm small muted">' + (row.created ? '<span data-ago="' + esc(row.created) + '">' + esc(D.ago(row.created)) + "</span>" : "") + "</td>";
    if (kind === "images") {
      const name = row.repo_tags.length ? row.repo_tags.map(esc).join("<br>") : '<span class="muted">&lt;none&gt;</span> ' + esc(row.id.split(":")[1]);
      const badges = (row.dangling ? ' <span class="badge">dangling</span>' : "") + (row.update_available ? ' <span class="badge update">update</span>' : "");
      return "<td>" + name + badges + "</td>" + host + '<td class="small">' + esc(D.bytes(row.size)) + "</td>" + created +
        '<td class="small">' + containerLinks(row.users || row.containers) + "</td><td>" + removeButton(row) + "</td>";
    }
    if (kind === "volumes") {
      return "<td>" + esc(row.name) + "</td>" + host + '<td class="small">' + esc(row.driver) + "</td>" + created +
        '<td class="small">' + containerLinks(row.users || row.containers) + "</td><td>" + removeButton(row) + "</td>";
    }
    return "<td>" + esc(row.name) + (row.internal ? ' <span class="badge">internal</span>' : "") + "</td>" + host +
      '<td class="small">' + esc(row.driver) + '</td><td class="small">' + esc(row.subnets.join(", ")) + "</td>" +
      '<td class="small">' + containerLinks(row.containers) + "</td><td>" + removeButton(row) + "</td>";
  }

  async function load() {
    const form = new FormData(filters), params = new URLSearchParams();
    if (form.get("host")) params.set("host", form.get("host"));
    if (form.get("search")) params.set("search", form.get("search"));
    if (form.get("dangling")) params.set("dangling", "true");
    const errors = document.getElementById("list-errors");
    try {
      const data = await D.api("GET", "/api/v1/" + kind + "/?" + params.toString());
      tbody.innerHTML = data.results.length ? data.results.map(function (row) { return '<tr data-id="' + esc(row.id) + '">' + cells(row) + "</tr>"; }).join("")
        : '<tr class="empty"><td colspan="6" class="muted">Nothing here on the hosts you may see.</td></tr>';
      errors.hidden = !data.errors.length;
      errors.textContent = data.errors.map(function (e) { return e.detail; }).join(" ");
    } catch (e) { errors.textContent = e.message; errors.hidden = false; }
  }

  filters.addEventListener("submit", function (event) { event.preventDefault(); load(); });
  filters.addEventListener("change", load);

  tbody.addEventListener("click", async function (event) {
    const button = event.target.closest("button[data-remove]");
    if (!button) return;
    const options = kind === "images" ? [{ name: "force", label: "Force (also when stopped containers were made from it)" }] : [];
    const answer = await D.confirm({ title: "Remove " + button.dataset.label + "?", text: "This cannot be undone.", confirm: "Remove", danger: true, options: options });
    if (!answer.ok) return;
    const query = answer.values.force ? "?force=true" : "";
    try {
      await D.api("DELETE", "/api/v1/" + kind + "/" + button.dataset.remove + "/" + query);
      D.toast("Removed " + button.dataset.label + ".", "ok");
      load();
    } catch (e) { D.toast(e.message, "bad"); }
  });

  // Long names (anonymous volumes are 64 hex digits) are cut so that the confirmation stays readable.
  function shortList(items) {
    const shown = items.slice(0, 20).map(function (name) { return name.length > 40 ? name.slice(0, 12) + "…" : name; });
    return shown.join(", ") + (items.length > shown.length ? " and " + (items.length - shown.length) + " more" : "");
  }

  const prune = document.getElementById("prune");
  if (prune) {
    prune.addEventListener("submit", async function (event) {
      event.preventDefault();
      const form = new FormData(prune), host = form.get("host");
      const body = { dry_run: true };
      if (kind === "images") body.dangling_only = !!form.get("dangling_only");
      const path = "/api/v1/hosts/" + host + "/" + kind + "/prune/";
      try {
        const dry = await D.api("POST", path, body);
        const items = kind === "images" ? dry.images.map(function (i) { return i.repo_tags[0] || i.id.split(":")[1]; }) : dry.volumes.map(function (v) { return v.name; });
        if (!items.length) { D.toast("Nothing to prune on " + hostNames[host] + ".", "ok"); return; }
        const answer = await D.confirm({ title: "Prune " + items.length + " " + kind + " on " + hostNames[host] + "?",
          text: shortList(items) + " — about " + D.bytes(dry.space_reclaimed) + ".", confirm: "Prune", danger: true });
        if (!answer.ok) return;
        body.dry_run = false;
        const real = await D.api("POST", path, body);
        const count = (real.images || real.volumes).length;
        D.toast("Pruned " + count + " " + kind + (real.failed.length ? "; " + real.failed.length + " could not be removed" : "") + ".", real.failed.length ? "bad" : "ok");
        load();
      } catch (e) { showError(e); }
    });
  }

  const create = document.getElementById("create");
  if (create) {
    create.addEventListener("submit", async function (event) {
      event.preventDefault();
      const form = new FormData(create), body = { host: form.get("host"), name: form.get("name") };
      if (kind === "networks") {
        body.internal = !!form.get("internal"); body.driver = "bridge";
        if (form.get("subnet")) body.subnet = form.get("subnet");
        if (form.get("gateway")) body.gateway = form.get("gateway");
      }
      formError.hidden = true;
      try {
        await D.api("POST", "/api/v1/" + kind + "/", body);
        D.toast("Created " + body.name + ".", "ok");
        create.reset();
        load();
      } catch (e) { showError(e); }
    });
  }

  const pull = document.getElementById("pull");
  if (pull) {
    const progress = document.getElementById("pull-progress");
    pull.addEventListener("submit", async function (event) {
      event.preventDefault();
      const form = new FormData(pull);
      formError.hidden = true;
      try {
        await D.api("POST", "/api/v1/hosts/" + form.get("host") + "/images/pull/", { image: form.get("image") });
        progress.textContent = "Pulling " + form.get("image") + "…";
      } catch (e) { showError(e); }
    });
    D.on("image.pull", function (d) {
      progress.textContent = d.image + ": " + (d.finished ? (d.status === "done" ? "pulled" : "failed: " + (d.error || "")) :
        d.status + (d.total ? " " + D.bytes(d.done) + " / " + D.bytes(d.total) : ""));
      if (d.finished) load();
    });
  }

  // Changes made anywhere (the CLI too) reach the page as `<kind>.changed` from the monitor.
  let pending = null;
  D.on(kind.replace(/s$/, "") + ".changed", function () {
    clearTimeout(pending);
    pending = setTimeout(load, 300);
  });

  load();
})();
