// Bundles the front end for the Python package: src/index.ts -> widget.js (ESM) and
// src/styles.css -> widget.css, into decart_widget/widget/static/. `--dev` skips minifying.
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = join(here, "..", "decart_widget", "widget", "static");
const dev = process.argv.includes("--dev");

mkdirSync(outdir, { recursive: true });

const common = {
  bundle: true,
  minify: !dev,
  sourcemap: dev ? "inline" : false,
  target: ["es2022"],
  logLevel: "info",
  legalComments: "none",
};

await Promise.all([
  esbuild.build({
    ...common,
    entryPoints: [join(here, "src", "index.ts")],
    outfile: join(outdir, "widget.js"),
    format: "esm",
    platform: "browser",
  }),
  esbuild.build({
    ...common,
    entryPoints: [join(here, "src", "styles.css")],
    outfile: join(outdir, "widget.css"),
  }),
]);
