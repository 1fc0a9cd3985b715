# syntax=docker/dockerfile:1
#
# Tessera container image.
#
#   docker build -t tessera .
#   docker run --rm -p 8000:8000 -v tessera-data:/app/data tessera
#
# Stage 1 builds the single-page app with Node, stage 2 compiles the release
# binary; the last is a slim Debian runtime that carries the binary, the app,
# CA certificates and curl (used by HEALTHCHECK).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

############################################################################
# The single-page app (frontend/ → dist), served by the server from SPA_DIR
############################################################################
FROM node:20-${DEBIAN_RELEASE}-slim AS spa

WORKDIR /spa
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

############################################################################
# Builder
############################################################################
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder

# `--build-arg FEATURES=embedded-spa` builds the app into the binary (served when SPA_DIR
# holds no app); the image carries frontend/dist either way.
ARG FEATURES=""

WORKDIR /build

# --- Dependency layer -----------------------------------------------------
# Only the manifests and the lockfile go in first, together with empty
# placeholder sources, so that compiling the (large) dependency graph is cached
# as long as Cargo.toml / Cargo.lock / migration/Cargo.toml stay unchanged.
COPY Cargo.toml Cargo.lock ./
COPY migration/Cargo.toml migration/Cargo.toml
# The loopback fakes are a workspace member (a dev-dependency only): their manifest and
# placeholder sources let cargo load the workspace; the image never builds them.
COPY tests/fakes/Cargo.toml tests/fakes/Cargo.toml

RUN mkdir -p src migration/src tests/fakes/src \
    && printf 'fn main() {}\n' > src/main.rs \
    && : > src/lib.rs \
    && : > migration/src/lib.rs \
    && : > tests/fakes/src/lib.rs \
    && printf 'fn main() {}\n' > tests/fakes/src/main.rs \
    && cargo build --release --locked --bin tessera --features "${FEATURES}" \
    && rm -rf src migration/src

# --- Application layer ----------------------------------------------------
COPY src src
COPY migration/src migration/src
COPY --from=spa /spa/dist frontend/dist

# COPY keeps the mtimes from the build context, which can be older than the
# placeholder artifacts built above; touch the sources so cargo rebuilds the
# two workspace crates instead of reusing the placeholder build.
RUN find src migration/src -type f -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin tessera --features "${FEATURES}" \
    && install -m 0755 target/release/tessera /usr/local/bin/tessera

############################################################################
# Runtime
############################################################################
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

ARG APP_UID=10001
ARG APP_GID=10001
RUN groupadd --system --gid "${APP_GID}" tessera \
    && useradd --system --uid "${APP_UID}" --gid tessera \
        --home-dir /app --no-create-home --shell /usr/sbin/nologin tessera \
    && mkdir -p /app/data \
    && chown -R tessera:tessera /app

COPY --from=builder /usr/local/bin/tessera /usr/local/bin/tessera
COPY --from=spa /spa/dist /app/frontend/dist

WORKDIR /app

# The default DATABASE_URL (sqlite://data/tessera.db?mode=rwc) resolves to
# /app/data/tessera.db; keep that directory on a volume.
VOLUME ["/app/data"]

ENV LISTEN_ADDR=0.0.0.0:8000

EXPOSE 8000

USER tessera:tessera

HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8000/ready || exit 1

ENTRYPOINT ["tessera"]
CMD ["serve"]
