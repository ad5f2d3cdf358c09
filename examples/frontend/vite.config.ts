import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run dev` forwards the API to the reference app (CHAT_APP_URL, default port 8000).
export default defineConfig({
  plugins: [react()],
  // stream-chat-react and its dependencies make one chunk of about 2 MB.
  build: { chunkSizeWarningLimit: 2500 },
  server: {
    proxy: { '/chat': process.env.CHAT_APP_URL ?? 'http://127.0.0.1:8000' },
  },
});
