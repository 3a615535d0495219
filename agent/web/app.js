// Optional: the page works without this. It reloads while we wait for something outside the
// page (an interactive login, a route approval), and asks before the destructive actions.
(function () {
  "use strict";
  var wait = document.body.getAttribute("data-refresh");
  if (wait) {
    setTimeout(function () { if (!document.querySelector("input:focus")) location.reload(); }, 1000 * +wait);
  }
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!confirm(f.getAttribute("data-confirm"))) e.preventDefault();
    });
  });
})();
