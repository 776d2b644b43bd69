// The dashboard's build: `vite build web` (npm run build:web) writes web/dist, which the
// controller serves at /. Relative asset paths, so the files also work under a path prefix.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [react()],
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 400 },
  server: { proxy: { "/api": "http://127.0.0.1:8080" } },
});
