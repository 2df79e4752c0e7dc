/* The notification channels page (templates/alerts/channels.html): test, enable/disable, add. */
(function () {
  const D = window.DockMon;
  document.getElementById("channels-table").addEventListener("click", async function (ev) {
    const button = ev.target.closest("button[data-act]"); if (!button) return;
    const id = button.closest("tr").dataset.channel;
    try {
      if (button.dataset.act === "test") {
        button.disabled = true;
        const r = await D.api("POST", "/api/v1/notification-channels/" + id + "/test/");
        D.toast(r.ok ? "Test sent" : "Test failed: " + r.error, r.ok ? "good" : "bad");
      } else {
        await D.api("PATCH", "/api/v1/notification-channels/" + id + "/", { enabled: button.dataset.enabled !== "1" });
        location.reload();
      }
    } catch (e) { D.toast(e.message, "bad"); } finally { button.disabled = false; }
  });
  const form = document.getElementById("add-channel");
  if (form) form.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    let config = {};
    try { config = form.config.value.trim() ? JSON.parse(form.config.value) : {}; } catch (e) { D.toast("Settings are not valid JSON", "bad"); return; }
    try {
      await D.api("POST", "/api/v1/notification-channels/", { name: form.name.value, kind: form.kind.value, config: config });
      location.reload();
    } catch (e) { D.toast(e.message, "bad"); }
  });
})();
