// The console's scripts: htmx for forms and filters, live updates over
// Server-Sent Events, and the history charts (uPlot).
import htmx from 'htmx.org';
import 'uplot/dist/uPlot.min.css';
import './app.css';
import { startLive, startAlertsLive } from './live.js';
import { startCharts } from './charts.js';

window.htmx = htmx;

function autosubmit() {
  document.querySelectorAll('select[data-autosubmit]').forEach((s) => {
    s.addEventListener('change', () => s.form.submit());
  });
}

document.addEventListener('DOMContentLoaded', () => {
  autosubmit();
  startLive();
  startAlertsLive();
  startCharts().catch((err) => {
    const root = document.getElementById('charts');
    if (root) {
      root.removeAttribute('aria-busy');
      root.dataset.error = String(err);
      root.dataset.charts = '0';
    }
    console.warn('charts:', err.message);
  });
});
