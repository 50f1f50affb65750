# budpipeline container image.
#
#   docker build -t budpipeline .
#   docker run --rm -p 8010:8010 -e DATABASE_URL=postgres://... -e APP_API_TOKEN=... budpipeline
#
# Stage 1 compiles the dependencies against placeholder sources, so that layer is reused
# until Cargo.toml or Cargo.lock change; stage 2 compiles the real sources on top of it.
# Stage 3 is a slim Debian (same glibc as the builder) with only the binary and the migrations.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    SQLX_OFFLINE=true

# Dependencies only. Every target declared in Cargo.toml must exist, so each gets a stub.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin/bench \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > src/bin/bench/main.rs \
 && : > src/lib.rs \
 && cargo build --release --locked --bin budpipeline \
 && rm -rf src

# The real sources (.dockerignore keeps target/ and .git out). COPY keeps the files' own
# modification times, which may be older than the stub build: drop the stub's artifacts and
# fingerprints and touch the sources so cargo cannot mistake the stub for the real thing.
COPY . .
RUN rm -rf target/release/.fingerprint/budpipeline-* \
           target/release/deps/budpipeline-* \
           target/release/deps/libbudpipeline-* \
           target/release/budpipeline* \
 && find src -type f -exec touch {} + \
 && cargo build --release --locked --bin budpipeline \
 && install -m 0755 target/release/budpipeline /usr/local/bin/budpipeline \
 && budpipeline --help > /dev/null

FROM ${RUNTIME_IMAGE} AS runtime
# Unpinned on purpose: the bookworm archive drops old versions, pins would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 budpipeline \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin budpipeline
WORKDIR /app
COPY --from=builder /usr/local/bin/budpipeline /usr/local/bin/budpipeline
COPY migrations/ /app/migrations/
# Numeric, so Kubernetes can check runAsNonRoot without resolving a name.
USER 10001:10001
ENV APP_PORT=8010
EXPOSE 8010
# The binary is PID 1 and handles SIGTERM itself (drains for SHUTDOWN_GRACE_SECONDS).
STOPSIGNAL SIGTERM
ENTRYPOINT ["budpipeline"]
CMD ["serve"]
