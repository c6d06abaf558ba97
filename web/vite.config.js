import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run dev` proxies the API to a running `flowgate server`
// (FLOWGATE_API, default http://127.0.0.1:8000) so the page and the API share
// one origin, as they do when the server serves web/dist itself.
const api = process.env.FLOWGATE_API || 'http://127.0.0.1:8000';

export default defineConfig({
  plugins: [react()],
  base: '/',
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1000 },
  server: { proxy: { '/api': { target: api, changeOrigin: true } } },
  test: { environment: 'node', include: ['test/**/*.test.{js,jsx}'] },
});
