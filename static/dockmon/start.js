/* Opens the live socket as soon as the page header exists (base.html loads this right after it),
   while the rest of the page is still being parsed; live.js parks early messages until the page's
   own scripts have registered their handlers. A file, not an inline script: the
   Content-Security-Policy allows scripts from DockMon's own origin only. */
window.DockMon.start();
