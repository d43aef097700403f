# syntax=docker/dockerfile:1

# ---- build stage ----------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src

# Install the toolchain pinned by rust-toolchain.toml in its own layer, so it
# is only fetched again when the pin changes.
COPY rust-toolchain.toml ./
RUN rustup toolchain install

# sqlx must not try to reach a database at compile time.
ENV SQLX_OFFLINE=true

COPY . .

# The cargo registry and the target dir are BuildKit cache mounts: dependencies
# are downloaded and compiled once and reused by later builds. The target dir
# is not part of the image, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/promptreg /usr/local/bin/promptreg

# ---- runtime stage --------------------------------------------------------
FROM debian:bookworm-slim

# curl is only used by the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 promptreg \
    && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin promptreg

WORKDIR /app
# The default DATABASE_URL (sqlite://data/promptreg.db) resolves to /app/data.
RUN mkdir -p /app/data && chown promptreg:promptreg /app/data

COPY --from=builder /usr/local/bin/promptreg /usr/local/bin/promptreg

ENV PROMPTREG_BIND=0.0.0.0:8080
USER 10001:10001
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1

ENTRYPOINT ["promptreg"]
CMD ["serve"]
