/* Extra networks cards (modules/ui/extra_networks.py builds them).
 *
 * A click on a Lora or Textual Inversion card adds its text (data-prompt, data-negative-prompt)
 * to the tab's prompt boxes after the separator, and a second click takes it out again, as in
 * A1111; an `input` event tells gradio the box changed. The search box and the sort controls
 * filter and order the cards in the page, and stay applied when the server re-renders them.
 * Checkpoint cards go to the server: bindCheckpointCards hands their clicks to gradio.
 */
(() => {
  const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

  function promptBox(tab, negative) {
    return document.querySelector(`#${tab}_${negative ? "neg_prompt" : "prompt"} textarea`);
  }

  /* A pattern for the network the text adds: a tag <kind:name:weight> with any weight, else the
   * text as a whole word; `after` is what follows the tag (a Lora's activation text). */
  function networkPattern(text) {
    const tag = text.match(/^<([^:>]+):([^:>]+)(?::[^>]*)?>([\s\S]*)$/);
    if (tag) {
      return { pattern: `<${escapeRegExp(tag[1])}:${escapeRegExp(tag[2])}(?::[^>]*)?>`, after: tag[3] };
    }
    return { pattern: `(?<![\\w-])${escapeRegExp(text)}(?![\\w-])`, after: "" };
  }

  /* The prompt without the network, or null when it is not in there. */
  function withoutNetwork(value, text, separator) {
    const { pattern, after } = networkPattern(text);
    const found = new RegExp(`(?:${escapeRegExp(separator)})?${pattern}(?:${escapeRegExp(after)})?`, "g");
    let stripped = value.replace(found, "");
    if (stripped === value) return null;
    if (separator && stripped.startsWith(separator)) stripped = stripped.slice(separator.length);
    return stripped;
  }

  function withNetwork(value, text, separator) {
    if (!value.trim()) return text;
    const endsInSpace = /\s$/.test(value) && !separator.trim();
    return value + (endsInSpace ? "" : separator) + text;
  }

  function toggleText(box, text, separator) {
    if (!box || !text) return;
    const stripped = withoutNetwork(box.value, text, separator);
    box.value = stripped !== null ? stripped : withNetwork(box.value, text, separator);
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function useCard(card) {
    const cards = card.closest(".aigen-cards");
    if (!cards) return;
    const separator = cards.dataset.separator ?? " ";
    toggleText(promptBox(cards.dataset.tab, false), card.dataset.prompt, separator);
    toggleText(promptBox(cards.dataset.tab, true), card.dataset.negativePrompt, separator);
  }

  function isActivation(event) {
    return event.type === "click" || event.key === "Enter" || event.key === " ";
  }

  for (const type of ["click", "keydown"]) {
    document.addEventListener(type, (event) => {
      const card = event.target.closest && event.target.closest(".aigen-card[data-prompt]");
      if (!card || !isActivation(event)) return;
      event.preventDefault();
      useCard(card);
    });
  }

  /* Search and sort: the controls of a page name its cards' element (data-cards). */
  function applyView(controls) {
    const root = document.getElementById(controls.dataset.cards);
    const container = root && root.querySelector(".aigen-cards");
    if (!container) return;
    const query = controls.querySelector(".aigen-en-search").value.trim().toLowerCase();
    const key = controls.querySelector(".aigen-en-sort").value;
    const descending = controls.querySelector(".aigen-en-sort-dir").dataset.descending === "1";
    const cards = [...container.querySelectorAll(".aigen-card")];
    for (const card of cards) card.hidden = !(card.dataset.search || "").includes(query);
    const value = (card) => (key === "date" ? Number(card.dataset.date) : card.dataset.name);
    cards.sort((a, b) => {
      const [x, y] = [value(a), value(b)];
      const order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    for (const card of cards) container.appendChild(card);
    container.dataset.viewed = "1";
  }

  const controlsOf = (element) => element.closest && element.closest(".aigen-en-controls");

  document.addEventListener("input", (event) => {
    const controls = controlsOf(event.target);
    if (controls) applyView(controls);
  });
  document.addEventListener("change", (event) => {
    const controls = controlsOf(event.target);
    if (controls) applyView(controls);
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest(".aigen-en-sort-dir");
    if (!button) return;
    const descending = button.dataset.descending !== "1";
    button.dataset.descending = descending ? "1" : "0";
    button.textContent = descending ? "↓ Descending" : "↑ Ascending";
    applyView(controlsOf(button));
  });

  /* Cards the server re-rendered (Refresh, opening the browser) get the page's view again. */
  new MutationObserver(() => {
    for (const container of document.querySelectorAll(".aigen-cards:not([data-viewed])")) {
      const controls = document.getElementById(container.dataset.controls);
      if (controls) applyView(controls);
      else container.dataset.viewed = "1";
    }
  }).observe(document.documentElement, { childList: true, subtree: true });

  /* For the checkpoints page's gr.HTML (js_on_load): a card click becomes the component's click
   * event, with the checkpoint's name, so the server switches the model. */
  function bindCheckpointCards(element, trigger) {
    const choose = (event) => {
      const card = event.target.closest && event.target.closest(".aigen-card[data-checkpoint]");
      if (!card || !element.contains(card) || !isActivation(event)) return;
      event.preventDefault();
      trigger("click", { checkpoint: card.dataset.checkpoint });
    };
    element.addEventListener("click", choose);
    element.addEventListener("keydown", choose);
  }

  window.aigenExtraNetworks = { bindCheckpointCards, withoutNetwork, withNetwork };
})();
