// promptreg's own script for live pages (served from /ui/live.js; the
// pages work without it).
// - A running evaluation's page (#live with data-events) follows the job's
//   server-sent events: each `progress` moves the bar and its text; on
//   `done` the page's content is fetched again and swapped in, without a
//   reload.
// - Upload forms (.file-pick, hidden until this script shows it) read a
//   chosen file into the items box and pick its format by extension.
(function () {
  "use strict";

  function showProgress(done, total) {
    var bar = document.getElementById("progress");
    var text = document.getElementById("progress-text");
    var percent = total > 0 ? Math.floor((done * 100) / total) : 0;
    if (bar) {
      bar.setAttribute("max", String(total));
      bar.setAttribute("value", String(done));
      bar.setAttribute("aria-valuetext", done + " of " + total + " items");
      bar.textContent = done + "/" + total;
    }
    if (text) {
      text.textContent = done + "/" + total + " items (" + percent + "%)";
    }
  }

  function swapInFreshPage() {
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var freshMain = fresh.querySelector("main");
        var main = document.querySelector("main");
        if (!freshMain || !main) {
          throw new Error("no main element");
        }
        main.replaceChildren.apply(
          main,
          Array.prototype.map.call(freshMain.childNodes, function (node) {
            return document.importNode(node, true);
          })
        );
        document.title = fresh.title;
      })
      .catch(function () {
        window.location.reload();
      });
  }

  function follow(live) {
    var source = new EventSource(live.getAttribute("data-events"));
    var status = document.getElementById("live-status");
    source.addEventListener("progress", function (event) {
      var data = JSON.parse(event.data);
      showProgress(data.done, data.total);
    });
    source.addEventListener("done", function (event) {
      source.close();
      var data = JSON.parse(event.data);
      if (status) {
        status.textContent = "The evaluation " + data.status + ".";
      }
      swapInFreshPage();
    });
    source.addEventListener("error", function () {
      // The browser retries on its own while the stream is open; a stream
      // that closed for good leaves the page as it is (Reload still works).
      if (source.readyState === EventSource.CLOSED && status) {
        status.textContent = "Live progress stopped; reload the page to update it.";
      }
    });
  }

  function fileFormat(name) {
    var lower = name.toLowerCase();
    if (lower.endsWith(".csv")) return "csv";
    if (lower.endsWith(".jsonl") || lower.endsWith(".ndjson")) return "jsonl";
    if (lower.endsWith(".json")) return "json";
    return null;
  }

  function enableFilePicks() {
    document.querySelectorAll(".file-pick").forEach(function (pick) {
      var form = pick.closest("form");
      var input = pick.querySelector("input[type=file]");
      var box = form && form.querySelector("textarea[name=content]");
      var format = form && form.querySelector("select[name=format]");
      if (!input || !box) return;
      pick.hidden = false;
      input.addEventListener("change", function () {
        var file = input.files && input.files[0];
        if (!file) return;
        file.text().then(function (text) {
          box.value = text;
          var chosen = fileFormat(file.name);
          if (chosen && format) format.value = chosen;
        });
      });
    });
  }

  function start() {
    var live = document.getElementById("live");
    if (live && live.getAttribute("data-events") && window.EventSource) {
      follow(live);
    }
    enableFilePicks();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
