// A1111's keyboard shortcuts (issue 19.5), on the visible generation tab (txt2img or img2img):
// Ctrl+Enter (Cmd+Enter on a Mac) presses Generate, Alt+Enter presses Skip and Esc presses
// Interrupt while that tab's job is queued or running. Esc is left alone when something else
// took it first (the lightbox, an open dropdown) or when the tab has no job, so that it never
// interrupts a job another tab or another person started. One listener on window, in the
// capture phase, as gradio re-renders the tabs.
(() => {
  const TABS = ["txt2img", "img2img"];

  function shown(element) {
    return Boolean(element) && element.getClientRects().length > 0;
  }

  // The generation tab on screen, or null (Extras, PNG Info, Settings ...).
  function visibleTab() {
    return TABS.find((tab) => shown(document.getElementById(`${tab}_generate`))) || null;
  }

  // Whether the tab's own job is waiting or running: its progress line says so
  // (progress.py writes data-state; the text is the fallback).
  function tabBusy(tab) {
    const progress = document.getElementById(`${tab}_progress`);
    if (!progress) return false;
    const line = progress.querySelector("[data-state]");
    if (line) return ["queued", "running"].includes(line.getAttribute("data-state"));
    return /Waiting in queue|step \d+\/\d+/.test(progress.innerText || "");
  }

  function press(tab, action) {
    const button = document.getElementById(`${tab}_${action}`);
    if (!button) return false;
    button.click();
    return true;
  }

  function dropdownOpen(target) {
    return target instanceof Element && Boolean(target.closest("[aria-expanded='true']"));
  }

  window.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || event.repeat) return;
    const tab = visibleTab();
    if (!tab) return;
    const enter = event.key === "Enter";
    let handled = false;
    if (enter && (event.ctrlKey || event.metaKey) && !event.altKey) {
      handled = press(tab, "generate");
    } else if (enter && event.altKey && !event.ctrlKey && !event.metaKey) {
      handled = tabBusy(tab) && press(tab, "skip");
    } else if (event.key === "Escape" && !dropdownOpen(event.target)) {
      handled = tabBusy(tab) && press(tab, "interrupt");
    }
    if (handled) event.preventDefault();
  }, true);
})();
