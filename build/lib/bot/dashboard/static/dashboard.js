// Draw every <canvas data-chart="key"> from the page's JSON (Chart.js configs built by the server).
(function () {
  const configs = JSON.parse(document.getElementById("chart-data").textContent);
  window.qunbotCharts = {};
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    const config = configs[canvas.dataset.chart];
    if (config) {
      window.qunbotCharts[canvas.dataset.chart] = new Chart(canvas, config);
    }
  });
})();
