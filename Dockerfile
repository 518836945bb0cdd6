# syntax=docker/dockerfile:1
# The flux-bootstrap-operator image: compiled JavaScript on node:24-slim, with git and ssh (the operator
# spawns both), running as the non-root user 65532 (deploy/deployment.yaml runs it with a read-only root
# filesystem, /work and /tmp on emptyDir volumes).

# --- build: compile src/ to dist/ (with the shipped Flux manifests), then keep only production dependencies
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime
FROM node:24-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin nonroot \
 && mkdir -p /work \
 && chown 65532:65532 /work
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# MALLOC_ARENA_MAX and the V8 flags below keep the operator small (measured by npm run bench): few malloc
# arenas, a young generation of 1 MiB semi-spaces, and V8 favouring memory over speed; it waits on I/O.
ENV NODE_ENV=production \
    HOME=/tmp \
    WORK_DIR=/work \
    MALLOC_ARENA_MAX=2
USER 65532:65532
EXPOSE 8080 8081
# tini reaps what git leaves behind when a git command is killed at its deadline.
ENTRYPOINT ["tini", "--", "node", "--max-semi-space-size=1", "--optimize-for-size", "dist/main.js"]
