# syntax=docker/dockerfile:1
# sse-manager: build with dev dependencies, run with production ones only.
#   docker build -t sse-manager .
#   docker run --rm -p 3000:3000 -e JWT_SECRET=... -e CORS_ORIGINS=https://app.example.com sse-manager
ARG NODE_VERSION=24

# --- build: TypeScript to dist/ -------------------------------------------------------
FROM node:${NODE_VERSION}-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json tsconfig.browser.json ./
COPY scripts/build-browser.mjs ./scripts/
COPY src ./src
RUN npm run build

# --- runtime: production dependencies, compiled code, the test page ---------------------
FROM node:${NODE_VERSION}-slim AS runtime
ENV NODE_ENV=production \
    PORT=3000 \
    HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY public ./public
# The image's unprivileged user (uid 1000); the app files stay owned by root, so it cannot change them.
USER node
EXPOSE 3000
# close-with-grace ends every stream with `event: disconnected` on SIGTERM, then exits.
STOPSIGNAL SIGTERM
# The slim image has no curl: Node's fetch does the probe.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Run the built server directly (`npm start` would check for a stale build first).
CMD ["node", "dist/server.js"]
