// Bundles the front end for the Python package, into decart_widget/widget/static/:
//   src/index.ts        -> widget.js   (ESM, the anywidget module every notebook loads)
//   src/livekit_room.ts -> livekit.js  (ESM with npm livekit-client, sent by the kernel only when
//                                       a Gen-B session starts: src/asset_loader.ts)
//   src/styles.css      -> widget.css
// widget.js carries livekit.js's sha-256 prefix (DW_LIVEKIT_ASSET) to key the page's cache.
// `--dev` skips minifying.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
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

const livekitFile = join(outdir, "livekit.js");
await esbuild.build({
  ...common,
  entryPoints: [join(here, "src", "livekit_room.ts")],
  outfile: livekitFile,
  format: "esm",
  platform: "browser",
});
const livekitId = createHash("sha256").update(readFileSync(livekitFile)).digest("hex").slice(0, 16);

await Promise.all([
  esbuild.build({
    ...common,
    entryPoints: [join(here, "src", "index.ts")],
    outfile: join(outdir, "widget.js"),
    format: "esm",
    platform: "browser",
    define: { DW_LIVEKIT_ASSET: JSON.stringify(livekitId) },
  }),
  esbuild.build({
    ...common,
    entryPoints: [join(here, "src", "styles.css")],
    outfile: join(outdir, "widget.css"),
  }),
]);
