// A1111's drop of an image onto the prompt box (issue 19.5): a PNG dropped onto the prompt or
// negative prompt of txt2img or img2img fills that tab from its infotext, as PNG Info's
// "Send to" does. The browser reads the PNG's "parameters" text chunk (tEXt, zTXt or iTXt)
// itself; the report ({name, infotext} or {name, problem}) goes to the server through the
// hidden button #<tab>_paste_infotext, whose gradio `js` takes it from
// window.aigenTakeDroppedInfotext(tab) (modules/ui/infotext_paste.py: one Python path fills
// the controls and warns about a file that gave nothing). Text dropped on the prompt is left
// to the browser. Listeners on window: gradio renders the prompts after load.
(() => {
  const TABS = ["txt2img", "img2img"];
  const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
  const KEYS = ["parameters", "comment"]; // as modules/processing/output/image_formats.py reads them
  const pending = {};

  window.aigenTakeDroppedInfotext = (tab) => {
    const report = pending[tab] || "";
    delete pending[tab];
    return report;
  };

  // The tab whose prompt box holds `target`, or null.
  function promptTab(target) {
    if (!(target instanceof Element)) return null;
    return TABS.find((tab) => target.closest(`#${tab}_prompt, #${tab}_neg_prompt`)) || null;
  }

  function hasFiles(event) {
    return Boolean(event.dataTransfer) && Array.from(event.dataTransfer.types || []).includes("Files");
  }

  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  function nulAt(bytes, start) {
    const index = bytes.indexOf(0, start);
    return index < 0 ? bytes.length : index;
  }

  // [keyword, text] of one tEXt/zTXt/iTXt chunk's data.
  async function chunkText(type, data) {
    const keyEnd = nulAt(data, 0);
    const keyword = new TextDecoder("latin1").decode(data.subarray(0, keyEnd));
    if (type === "tEXt") return [keyword, new TextDecoder("latin1").decode(data.subarray(keyEnd + 1))];
    if (type === "zTXt") return [keyword, new TextDecoder("latin1").decode(await inflate(data.subarray(keyEnd + 2)))];
    const compressed = data[keyEnd + 1] === 1;
    const languageEnd = nulAt(data, keyEnd + 3);
    const translatedEnd = nulAt(data, languageEnd + 1);
    const body = data.subarray(translatedEnd + 1);
    return [keyword, new TextDecoder("utf-8").decode(compressed ? await inflate(body) : body)];
  }

  // The PNG's infotext, or a problem: "not-png", "no-parameters".
  async function pngInfotext(file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    if (bytes.length < 8 || PNG_SIGNATURE.some((value, index) => bytes[index] !== value)) {
      return { problem: "not-png" };
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const found = {};
    for (let position = 8; position + 12 <= bytes.length;) {
      const length = view.getUint32(position);
      const type = String.fromCharCode(...bytes.subarray(position + 4, position + 8));
      if (type === "IEND") break;
      if (type === "tEXt" || type === "zTXt" || type === "iTXt") {
        const [keyword, text] = await chunkText(type, bytes.subarray(position + 8, position + 8 + length));
        if (KEYS.includes(keyword) && !(keyword in found)) found[keyword] = text;
      }
      position += 12 + length;
    }
    const text = KEYS.map((key) => found[key]).find((value) => value && value.trim());
    return text ? { infotext: text } : { problem: "no-parameters" };
  }

  async function report(file) {
    try {
      return { name: file.name, ...(await pngInfotext(file)) };
    } catch (error) {
      return { name: file.name, problem: "unreadable" };
    }
  }

  window.addEventListener("dragover", (event) => {
    if (!hasFiles(event) || !promptTab(event.target)) return;
    event.preventDefault(); // allow the drop here (else the browser opens the file)
    event.dataTransfer.dropEffect = "copy";
  }, true);

  window.addEventListener("drop", async (event) => {
    const tab = promptTab(event.target);
    const files = event.dataTransfer ? event.dataTransfer.files : null;
    if (!tab || !files || files.length === 0) return;
    event.preventDefault();
    event.stopPropagation();
    pending[tab] = JSON.stringify(await report(files[0]));
    const button = document.getElementById(`${tab}_paste_infotext`);
    if (button) button.click();
  }, true);
})();
