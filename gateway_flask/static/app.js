// Progressive enhancement for the upload page and the API health indicator.
// The form works without this file: it only adds drag-and-drop, a file list and live health.
"use strict";

(function () {
  function formatBytes(n) {
    if (n >= 1048576) return (n / 1048576).toFixed(1) + " MB";
    return Math.max(1, Math.round(n / 1024)) + " KB";
  }

  function setupUpload(form) {
    var input = form.querySelector("#files");
    var zone = form.querySelector("#dropzone");
    var list = form.querySelector("#file-list");
    var warning = form.querySelector("#client-warning");
    var submit = form.querySelector("#submit");
    var maxBytes = Number(form.dataset.maxBytes);
    var maxFiles = Number(form.dataset.maxFiles);

    function showFiles() {
      list.textContent = "";  // textContent, never innerHTML: file names are untrusted text
      var total = 0;
      Array.prototype.forEach.call(input.files, function (file) {
        var item = document.createElement("li");
        item.textContent = file.name + " · " + formatBytes(file.size);
        list.appendChild(item);
        total += file.size;
      });
      var problems = [];
      if (input.files.length > maxFiles) problems.push(input.files.length + " files chosen; the limit is " + maxFiles + ".");
      if (total > maxBytes) problems.push("These files total " + formatBytes(total) + "; the limit is " + formatBytes(maxBytes) + " per upload.");
      warning.textContent = problems.join(" ");
      warning.hidden = problems.length === 0;
    }

    input.addEventListener("change", showFiles);
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("dragover");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragover"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        showFiles();
      }
    });
    form.addEventListener("submit", function () {
      submit.disabled = true;
      submit.textContent = "Analysing…";
    });
    // Coming back with the browser's back button must not leave the button disabled.
    window.addEventListener("pageshow", function () {
      submit.disabled = false;
      submit.textContent = "Analyse images";
    });
    showFiles();
  }

  function setupHealth(badge) {
    var labels = { ready: "API ready", not_ready: "API starting", down: "API unreachable" };
    function refresh() {
      fetch(badge.dataset.url, { headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (body) { return body.api; })
        .catch(function () { return "down"; })
        .then(function (state) {
          if (!labels[state]) state = "down";
          badge.className = "health health-" + state;
          badge.querySelector(".health-text").textContent = labels[state];
        });
    }
    window.setInterval(refresh, 15000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("upload-form");
    if (form) setupUpload(form);
    var badge = document.getElementById("api-health");
    if (badge) setupHealth(badge);
  });
})();
