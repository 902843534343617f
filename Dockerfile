# syntax=docker/dockerfile:1
# ocimirror: pull-through caching mirror for OCI / Docker registries.
#   docker build -t ocimirror .
#   docker run -p 5000:5000 -v ocimirror-data:/data ocimirror
# Node 22 LTS at run time (CI tests on Node 20; both are supported, see package.json engines).

# Bundle src/ into dist/ocimirror.mjs with esbuild (a dev dependency; scripts/build.ts).
FROM node:22-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/build.ts ./scripts/build.ts
COPY src ./src
RUN npm run build

# Production dependencies only; better-sqlite3 and our sendfile addon (native/sendfile, built by
# the install script) compile here.
FROM node:22-bookworm-slim AS deps
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY native ./native
RUN npm ci --omit=dev --no-audit --no-fund \
    && test -f native/sendfile/build/Release/sendfile.node

FROM node:22-bookworm-slim
ENV NODE_ENV=production \
    OCIMIRROR_DATA=/data \
    OCIMIRROR_LISTEN=0.0.0.0:5000
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=deps /app/native/sendfile/build/Release/sendfile.node ./native/sendfile/build/Release/sendfile.node
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY config ./config
# The console's stylesheet and script are files served as they are (htmx comes from node_modules).
COPY src/console/assets ./src/console/assets
# `ocimirror prefetch|gc …` on PATH, e.g. for `kubectl exec`.
RUN mkdir -p /data && chown node:node /data \
    && ln -s /app/bin/ocimirror.js /usr/local/bin/ocimirror
USER node
VOLUME ["/data"]
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:5000/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM drains (readiness 503, in-flight pulls finish within server.shutdownGrace) and exits 0.
STOPSIGNAL SIGTERM
# --max-semi-space-size=8: a smaller young generation (lower peak RSS under load).
ENTRYPOINT ["node", "--max-semi-space-size=8", "dist/ocimirror.mjs"]
CMD ["serve"]
