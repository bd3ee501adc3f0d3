# Build with the Rust toolchain; run on slim Debian as a non-root user.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin redlock-proxy

FROM debian:bookworm-slim
RUN useradd --system --no-create-home --shell /usr/sbin/nologin redlock \
    && mkdir -p /etc/redlock-proxy
COPY --from=build /src/target/release/redlock-proxy /usr/local/bin/redlock-proxy
COPY config/redlock-proxy.toml /etc/redlock-proxy/redlock-proxy.toml
# The defaults listen on loopback only; in a container, listen on every interface.
# The operations endpoint (/metrics, /healthz, /readyz) is on port 9121.
ENV REDLOCK_PROXY_CONFIG=/etc/redlock-proxy/redlock-proxy.toml \
    REDLOCK_PROXY_LISTEN=0.0.0.0:7379 \
    REDLOCK_PROXY_METRICS_LISTEN=0.0.0.0:9121
USER redlock
EXPOSE 7379 9121
# The binary is its own health-check client (the image has no curl).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/redlock-proxy", "healthcheck", "--url", "http://127.0.0.1:9121/healthz"]
# Masters and backend come from the mounted file or from the environment, e.g.
#   docker run -e REDLOCK_PROXY_MASTERS=redis://a:6379,redis://b:6379,redis://c:6379 \
#              -e REDLOCK_PROXY_PASSTHROUGH=redis://cache:6379 -p 7379:7379 redlock-proxy
# SIGHUP (docker kill -s HUP) reloads the configuration; SIGTERM drains and exits.
ENTRYPOINT ["/usr/local/bin/redlock-proxy"]
