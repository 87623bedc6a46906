/* The health dashboard: draws the charts from /admin/dashboard/data and refreshes the
   page's numbers from it. The page itself is rendered by the server with the same numbers,
   so it reads without JavaScript; this file adds the charts and the reloads. */
(function () {
  "use strict";

  var root = document.getElementById("dashboard");
  if (!root || typeof window.Chart === "undefined") {
    return;
  }
  var url = root.getAttribute("data-url");
  var refresh = Math.max(parseInt(root.getAttribute("data-refresh"), 10) || 15, 5) * 1000;
  var charts = {};

  function lookup(data, path) {
    var value = data;
    var parts = path.split("|");
    for (var i = 0; i < parts.length; i++) {
      if (value === null || value === undefined) {
        return undefined;
      }
      value = value[parts[i]];
    }
    return value;
  }

  function format(value, kind) {
    if (kind === "errors") {
      return Object.keys(value || {}).map(function (k) { return k + ": " + value[k]; }).join("; ");
    }
    if (value === null || value === undefined) {
      return kind === "audit" ? "never run" : "–";
    }
    if (kind === "seconds") {
      return value + " s";
    }
    if (kind === "ms") {
      return value + " ms";
    }
    if (kind === "audit") {
      return value ? "ok" : "FAILED";
    }
    if (kind === "alive") {
      return value ? "yes" : "NO";
    }
    return String(value);
  }

  function updateNumbers(data) {
    var cells = root.querySelectorAll("[data-path]");
    for (var i = 0; i < cells.length; i++) {
      var cell = cells[i];
      var value = lookup(data, cell.getAttribute("data-path"));
      if (value !== undefined) {
        cell.textContent = format(value, cell.getAttribute("data-format"));
      }
    }
  }

  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (!canvas) {
      return;
    }
    if (charts[id]) {
      charts[id].data = config.data;
      charts[id].update("none");
    } else {
      config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options);
      charts[id] = new window.Chart(canvas, config);
    }
  }

  function line(label, values, color, axis) {
    return { label: label, data: values || [], borderColor: color, backgroundColor: color, yAxisID: axis || "y",
             pointRadius: 0, borderWidth: 2, spanGaps: false };
  }

  function updateCharts(data) {
    var series = data.series || {};
    draw("chart-activity", {
      type: "line",
      data: { labels: series.minutes, datasets: [line("orders", series.orders, "#417690"),
                                                 line("trades", series.trades, "#d6a031")] },
      options: { scales: { y: { beginAtZero: true } } }
    });
    draw("chart-http", {
      type: "line",
      data: { labels: series.minutes, datasets: [line("requests", series.requests, "#417690"),
                                                 line("4xx", series.errors_4xx, "#d6a031"),
                                                 line("5xx", series.errors_5xx, "#ba2121"),
                                                 line("avg latency (ms)", series.latency_avg_ms, "#70bf2b", "ms")] },
      options: { scales: { y: { beginAtZero: true }, ms: { beginAtZero: true, position: "right",
                                                           grid: { drawOnChartArea: false } } } }
    });
    var currencies = (data.reserves && data.reserves.currencies) || {};
    var codes = Object.keys(currencies);
    draw("chart-reserves", {
      type: "bar",
      data: { labels: codes, datasets: [{ label: "ratio", backgroundColor: "#417690",
                                          data: codes.map(function (c) {
                                            var r = currencies[c].ratio;
                                            return r === null ? null : parseFloat(r);
                                          }) }] },
      options: { scales: { y: { beginAtZero: true } } }
    });
    var queues = (data.celery && data.celery.queues) || {};
    var names = Object.keys(queues);
    draw("chart-queues", {
      type: "bar",
      data: { labels: names, datasets: [{ label: "messages waiting", backgroundColor: "#d6a031",
                                          data: names.map(function (q) { return queues[q]; }) }] },
      options: { scales: { y: { beginAtZero: true } } }
    });
  }

  function load() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        updateNumbers(data);
        updateCharts(data);
        root.classList.remove("dashboard-stale");
      })
      .catch(function () {
        root.classList.add("dashboard-stale");
      })
      .then(function () {
        window.setTimeout(load, refresh);
      });
  }

  load();
})();
