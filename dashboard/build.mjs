// Builds the dashboard into DIR (default dist/): DIR/index.html, DIR/assets/app.js and
// DIR/assets/app.css, minified, with uPlot bundled in. No network: esbuild and uPlot come from
// node_modules (npm ci, which scripts/install-deps.sh runs).
//   node build.mjs [--outdir=DIR]     (npm run build -- --outdir=DIR)
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const arg = process.argv.find((a) => a.startsWith("--outdir="));
const outdir = resolve(arg ? arg.slice("--outdir=".length) : join(here, "dist"));

mkdirSync(join(outdir, "assets"), { recursive: true });
await build({
  entryPoints: { app: join(here, "src/main.js") },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outdir: join(outdir, "assets"),
  legalComments: "none",
  logLevel: "warning",
});
copyFileSync(join(here, "index.html"), join(outdir, "index.html"));
console.log(`dashboard built into ${outdir}`);
