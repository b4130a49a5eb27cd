// Bundles src/main.js (our scripts, htmx and uPlot) and the styles it
// imports into ../static/dist/app.js and app.css, minified, for go:embed.
import * as esbuild from 'esbuild';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';

const out = new URL('../static/dist/', import.meta.url).pathname;
await esbuild.build({
  entryPoints: { app: 'src/main.js' },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  outdir: out,
  legalComments: 'none',
  logLevel: 'warning',
});
let total = 0;
for (const f of ['app.js', 'app.css']) {
  const gz = gzipSync(readFileSync(out + f)).length;
  total += gz;
  console.log(`web/static/dist/${f}: ${(gz / 1024).toFixed(1)} KiB gzipped`);
}
console.log(`console assets: ${(total / 1024).toFixed(1)} KiB gzipped in all`);
