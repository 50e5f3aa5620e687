// Vite's import.meta.glob, which vitest resolves at load time (the conformance traces).
interface ImportMeta {
  glob<T>(pattern: string, options: { eager: true; import: "default" }): Record<string, T>;
}
