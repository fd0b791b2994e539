// "Show where the model looked": sends a result's preview PNG to /api/explain and shows the
// occlusion-sensitivity overlays with a legend. The page never keeps uploads, so the preview
// (the cleaned grey image the page already shows) is what gets explained.
// No innerHTML anywhere: everything from the API is set as text or as a data: URI.
"use strict";

(function () {
  var MAPS = [
    { key: "age", title: "Age", delta: "delta_age", png: "overlay_age_png",
      up: "older", down: "younger", unit: " years", digits: 1 },
    { key: "p_male", title: "Sex", delta: "delta_p_male", png: "overlay_p_male_png",
      up: "more male", down: "more female", unit: " P(male)", digits: 3 }
  ];

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function pngBlob(dataUri) {
    // fetch(data:) is blocked by the CSP's connect-src, so decode the base64 by hand.
    var bytes = atob(dataUri.slice(dataUri.indexOf(",") + 1));
    var buf = new Uint8Array(bytes.length);
    for (var i = 0; i < bytes.length; i++) buf[i] = bytes.charCodeAt(i);
    return new Blob([buf], { type: "image/png" });
  }

  function peak(grid) {
    var m = 0;
    (grid || []).forEach(function (row) {
      row.forEach(function (v) { m = Math.max(m, Math.abs(v)); });
    });
    return m;
  }

  function figure(map, body) {
    var fig = el("figure", "explain-map explain-map-" + map.key);
    var img = el("img", "explain-overlay");
    img.src = "data:image/png;base64," + body[map.png];
    img.alt = map.title + " sensitivity map over the image the model saw";
    img.width = 256;
    img.height = 256;
    fig.appendChild(img);
    var largest = peak(body[map.delta]).toFixed(map.digits);
    var cap = el("figcaption");
    cap.appendChild(el("strong", null, map.title));
    var legend = el("span", "explain-legend");
    [["down", "hiding the patch made it " + map.down], ["up", "made it " + map.up]].forEach(function (item) {
      var row = el("span", "legend-item");
      row.appendChild(el("span", "swatch swatch-" + item[0], ""));
      row.appendChild(el("span", null, item[1]));
      legend.appendChild(row);
    });
    cap.appendChild(legend);
    cap.appendChild(el("span", "explain-scale",
      "Strongest colour = a change of " + largest + map.unit + "."));
    fig.appendChild(cap);
    return fig;
  }

  function render(panel, body) {
    panel.textContent = "";
    panel.appendChild(el("h3", null, "Where the model looked"));
    var maps = el("div", "explain-maps");
    MAPS.forEach(function (map) { if (body[map.png]) maps.appendChild(figure(map, body)); });
    panel.appendChild(maps);
    var grid = body.grid || "?";
    panel.appendChild(el("p", "explain-note",
      "Each of the " + grid + " × " + grid + " patches was greyed out in turn and the image " +
      "run through the model again; colour shows how much the prediction moved. Strong colour " +
      "marks regions the prediction depends on, not findings. Computed on the preview above."));
  }

  function panelFor(button) {
    var result = button.closest(".result");
    var id = "explain-" + button.dataset.index;
    var panel = document.getElementById(id);
    if (panel) return panel;
    panel = el("section", "explain-panel");
    panel.id = id;
    panel.setAttribute("aria-live", "polite");
    if (result.tagName === "TR") {
      // A table row cannot hold the maps: they get a full-width row of their own below it.
      var tr = el("tr", "explain-row");
      var td = el("td");
      td.colSpan = result.children.length;
      td.appendChild(panel);
      tr.appendChild(td);
      result.parentNode.insertBefore(tr, result.nextSibling);
    } else {
      result.appendChild(panel);
    }
    button.setAttribute("aria-controls", id);
    return panel;
  }

  function explain(button, url) {
    var panel = panelFor(button);
    var container = panel.closest(".explain-row") || panel;
    if (button.getAttribute("aria-expanded") === "true") {
      container.hidden = true;
      button.setAttribute("aria-expanded", "false");
      button.textContent = "Show where the model looked";
      return;
    }
    container.hidden = false;
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    button.textContent = "Hide where the model looked";
    if (panel.dataset.loaded) return;
    var thumb = button.closest(".result").querySelector("img.thumb");
    var form = new FormData();
    form.append("file", pngBlob(thumb.src), "preview.png");
    panel.textContent = "";
    panel.appendChild(el("p", "explain-status", "Greying out patches and asking the model again…"));
    button.disabled = true;
    fetch(url, { method: "POST", body: form, headers: { Accept: "application/json" } })
      .then(function (r) {
        return r.json().then(function (body) { return { ok: r.ok, body: body }; });
      })
      .then(function (res) {
        if (!res.ok) throw new Error(res.body.detail || "the explanation failed");
        render(panel, res.body);
        panel.dataset.loaded = "1";
      })
      .catch(function (err) {
        panel.textContent = "";
        panel.appendChild(el("p", "explain-error", "Could not explain this image: " + err.message));
      })
      .then(function () { button.disabled = false; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("explain-root");
    if (!root) return;
    root.addEventListener("click", function (event) {
      var button = event.target.closest(".explain-button");
      if (button) explain(button, root.dataset.url);
    });
  });
})();
