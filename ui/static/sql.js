// The SQL console: Ctrl+Enter (or Cmd+Enter) runs the query. Everything else works without script:
// the form is a plain GET, so the query lives in the page's address.
(function () {
  document.addEventListener("DOMContentLoaded", () => {
    const form = document.querySelector("form[data-sql-console]");
    if (!form) return;
    const box = form.querySelector("textarea[name=q]");
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        if (box.value.trim()) form.requestSubmit();
      }
    });
    // Back at the console after a run: the cursor goes to the end of the query, ready to edit it.
    if (!location.hash) {
      box.focus();
      box.setSelectionRange(box.value.length, box.value.length);
    }
  });
})();
