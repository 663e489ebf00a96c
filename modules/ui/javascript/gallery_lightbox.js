// A1111's lightbox (issue 19.3): clicking the large image of a results gallery
// (#txt2img_gallery, #img2img_gallery) shows it at full size in an overlay, #lightboxModal with
// #modalImage as in A1111, instead of gradio's "go to the next image". A click on the image
// toggles between full size (A1111's js_modal_lightbox_initially_zoomed) and fitted to the
// window; Esc, the x or a click beside the image closes it. Event delegation on window: gradio
// renders (and re-renders) the gallery after load.
(() => {
  const GALLERY_IMAGE = "#txt2img_gallery button.media-button img, #img2img_gallery button.media-button img";

  function lightbox() {
    let box = document.getElementById("lightboxModal");
    if (box) return box;
    box = document.createElement("div");
    box.id = "lightboxModal";
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-label", "Full-size image");
    box.hidden = true;
    const close = document.createElement("button");
    close.className = "modalClose";
    close.type = "button";
    close.title = "Close (Esc)";
    close.textContent = "\u00d7";
    const image = document.createElement("img");
    image.id = "modalImage";
    image.alt = "";
    box.append(close, image);
    box.addEventListener("click", (event) => {
      if (event.target === image) image.classList.toggle("aigen-fit");
      else closeLightbox();
    });
    document.body.appendChild(box);
    return box;
  }

  function openLightbox(source) {
    const box = lightbox();
    const image = box.querySelector("#modalImage");
    image.classList.remove("aigen-fit");
    image.src = source.src;
    image.alt = source.alt || "";
    box.hidden = false;
  }

  function closeLightbox() {
    const box = document.getElementById("lightboxModal");
    if (box) box.hidden = true;
  }

  // Capture phase: runs before gradio's own click handler, which it replaces.
  window.addEventListener("click", (event) => {
    const image = event.target instanceof Element ? event.target.closest("button.media-button") : null;
    const shown = image ? image.querySelector("img") : null;
    if (!shown || !shown.matches(GALLERY_IMAGE)) return;
    event.preventDefault();
    event.stopPropagation();
    openLightbox(shown);
  }, true);

  // Esc closes the lightbox only (no other Esc action, such as Interrupt, sees it).
  window.addEventListener("keydown", (event) => {
    const box = document.getElementById("lightboxModal");
    if (event.key !== "Escape" || !box || box.hidden) return;
    event.preventDefault();
    event.stopPropagation();
    closeLightbox();
  }, true);
})();
