// Ray history: what every page needs. The theme choice is kept in this browser only.
(function () {
  const root = document.documentElement;
  const saved = localStorage.getItem("ray-history-theme");
  if (saved) root.dataset.theme = saved;
  document.addEventListener("DOMContentLoaded", () => {
    for (const button of document.querySelectorAll("[data-theme-toggle]")) {
      button.addEventListener("click", () => {
        const dark = root.dataset.theme ? root.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
        root.dataset.theme = dark ? "light" : "dark";
        localStorage.setItem("ray-history-theme", root.dataset.theme);
      });
    }
    // A page that shows a running session refreshes itself now and then.
    const refresh = document.querySelector("[data-refresh-seconds]");
    if (refresh) setTimeout(() => location.reload(), 1000 * Number(refresh.dataset.refreshSeconds));
  });
})();
