# syntax=docker/dockerfile:1
# coze-session-gateway: multi-stage build; the runtime stage holds production dependencies only.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY config ./config
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="coze-session-gateway" \
      org.opencontainers.image.description="Per-user session isolation for the Coze API: authenticates your users, mints a Coze OAuth token per session_name, and proxies HTTP, SSE and WebSocket traffic." \
      org.opencontainers.image.source="https://github.com/coze-session-gateway/coze-session-gateway" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config ./config
# A numeric non-root user, so runAsNonRoot can be verified; nothing is written at run time,
# so the root filesystem can be read-only.
USER 10001:10001
EXPOSE 8080 9091
# For Docker and Compose (Kubernetes ignores it and probes /healthz and /readyz itself). The
# image has no curl: the gateway's own healthcheck command asks the admin /healthz, at the
# admin.host and admin.port that GATEWAY_CONFIG and the environment give (a wildcard host is
# asked on loopback).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "dist/main.js", "healthcheck"]
# node is PID 1 itself (exec form, no npm, no shell), so SIGTERM reaches it and the drain runs.
ENTRYPOINT ["node", "dist/main.js"]
CMD ["serve"]
