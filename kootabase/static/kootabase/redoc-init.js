// Starts ReDoc (see templates/drf_spectacular/redoc.html) under the Content-Security-Policy.
// ReDoc puts the nonce this script tag carries on the <style> elements it creates from now
// on. The one its bundle added while loading, before it knew the nonce, was refused by the
// policy: it is added again here, with the nonce.
"use strict";
(function () {
  const script = document.currentScript;
  for (const refused of document.head.querySelectorAll("style:not([nonce])")) {
    const style = document.createElement("style");
    style.nonce = script.nonce;
    style.textContent = refused.textContent;
    refused.replaceWith(style);
  }
  const options = Object.assign(JSON.parse(script.dataset.settings), { nonce: script.nonce });
  Redoc.init(script.dataset.specUrl, options, document.getElementById("redoc-container"));
})();
