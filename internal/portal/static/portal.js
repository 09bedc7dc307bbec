// stackbill portal: draws each <canvas data-chart> with Chart.js. Pages work
// without this script; the table under each chart carries the same totals.
(function () {
  "use strict";
  var palette = ["#0b5cad", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#1098ad", "#e67700", "#5c940d", "#868e96"];
  function draw() {
    if (typeof Chart === "undefined") { return; }
    document.querySelectorAll("canvas[data-chart]").forEach(function (el) {
      var spec = JSON.parse(el.getAttribute("data-chart"));
      var bar = spec.kind === "bar";
      new Chart(el, {
        type: bar ? "bar" : "line",
        data: {
          labels: spec.labels,
          datasets: spec.datasets.map(function (d, i) {
            var c = palette[i % palette.length];
            // Quantities belong to a bucket (an hour, a day): bars, stacked
            // when they add up, side by side when they compare (this month
            // and last), or steps when series in different units cannot be
            // stacked.
            return { label: d.label, data: d.data, borderColor: c, backgroundColor: bar ? c : c + "33", pointRadius: 0, stepped: "middle", fill: false, borderWidth: 2 };
          })
        },
        options: {
          animation: false, responsive: true, maintainAspectRatio: false,
          interaction: { mode: "index", intersect: false },
          scales: { x: { stacked: spec.stacked, ticks: { maxTicksLimit: 12 } }, y: { stacked: spec.stacked, beginAtZero: true, title: { display: !!spec.unit, text: spec.unit } } },
          plugins: {
            legend: { position: "bottom" },
            tooltip: { callbacks: { label: function (ctx) { return ctx.dataset.label + ": " + ctx.formattedValue + (spec.unit ? " " + spec.unit : ""); } } }
          }
        }
      });
      el.setAttribute("data-drawn", "true");
    });
  }
  // A form that failed answers at its POST path; the address bar shows the
  // page's own, so reloading it reads the page instead of posting again.
  function settleURL() {
    var el = document.querySelector("[data-replace-url]");
    if (el && window.history && history.replaceState) { history.replaceState(null, "", el.getAttribute("data-replace-url")); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); document.addEventListener("DOMContentLoaded", settleURL); } else { draw(); settleURL(); }
})();
