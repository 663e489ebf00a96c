// The page's theme from the Settings tab's Theme (A1111's --theme light|dark; issue 19.10).
// Gradio themes the page dark by a "dark" class (on the app's parent element; its styles
// switch every colour variable under it). The server calls window.aigenTheme.apply(theme) on
// each page load and after "Apply settings"; "system" leaves the browser's preference (gradio's
// own choice) as it is. An address with ?__theme=light|dark (gradio's switch) always wins.
(() => {
  const DARK_QUERY = "(prefers-color-scheme: dark)";

  function targets() {
    const app = document.querySelector("gradio-app");
    return [document.body, app, app && app.parentElement].filter(Boolean);
  }

  function wanted(theme) {
    const fromAddress = new URL(window.location.href).searchParams.get("__theme");
    if (fromAddress === "light" || fromAddress === "dark") return fromAddress;
    if (theme === "light" || theme === "dark") return theme;
    return window.matchMedia && window.matchMedia(DARK_QUERY).matches ? "dark" : "light";
  }

  function apply(theme) {
    const dark = wanted(theme) === "dark";
    for (const element of document.querySelectorAll(".dark")) element.classList.remove("dark");
    if (dark) for (const element of targets()) element.classList.add("dark");
    document.documentElement.style.colorScheme = dark ? "dark" : "light";
    return dark;
  }

  window.aigenTheme = { apply };
})();
