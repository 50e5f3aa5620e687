// Bundles the front end for the Python package, into decart_widget/widget/static/:
//   src/index.ts        -> widget.js   (ESM, the anywidget module every notebook loads)
//   src/webrtc_asset.ts -> webrtc.js   (ESM, the Gen-A media transport)
//   src/livekit_room.ts -> livekit.js  (ESM with npm livekit-client, the Gen-B one)
//   src/frames_asset.ts -> frames.js   (ESM, w.snapshot()'s frame capture, on the first request)
//   src/capture_sources.ts -> sources.js (ESM, the screen, video-file and Python sources, on first use)
//   src/session_view.ts -> session_view.js (ESM, SessionView's own anywidget module)
//   src/styles.css      -> widget.css
// The kernel sends a media transport's asset only when a session of that transport starts
// (src/asset_loader.ts); widget.js carries their sha-256 prefixes (DW_ASSET_IDS) to key the
// page's cache.
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
  charset: "utf8",
};

const assets = { webrtc: "webrtc_asset.ts", livekit: "livekit_room.ts", frames: "frames_asset.ts", sources: "capture_sources.ts" };
const assetIds = {};
await Promise.all(
  Object.entries(assets).map(async ([name, entry]) => {
    const outfile = join(outdir, `${name}.js`);
    await esbuild.build({ ...common, entryPoints: [join(here, "src", entry)], outfile, format: "esm", platform: "browser" });
    assetIds[name] = createHash("sha256").update(readFileSync(outfile)).digest("hex").slice(0, 16);
  }),
);

await Promise.all([
  esbuild.build({
    ...common,
    entryPoints: [join(here, "src", "index.ts")],
    outfile: join(outdir, "widget.js"),
    format: "esm",
    platform: "browser",
    define: { DW_ASSET_IDS: JSON.stringify(assetIds) },
  }),
  esbuild.build({
    ...common,
    entryPoints: [join(here, "src", "session_view.ts")],
    outfile: join(outdir, "session_view.js"),
    format: "esm",
    platform: "browser",
  }),
  esbuild.build({
    ...common,
    entryPoints: [join(here, "src", "styles.css")],
    outfile: join(outdir, "widget.css"),
  }),
]);
