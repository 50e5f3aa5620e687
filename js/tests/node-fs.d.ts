// The two node:fs functions structure.test.ts reads the sources with (the project has no
// @types/node: the front end never runs in Node outside its tests).
declare module "node:fs" {
  export function readdirSync(path: URL): string[];
  export function readFileSync(path: URL, encoding: "utf8"): string;
}
