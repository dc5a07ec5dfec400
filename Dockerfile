# syntax=docker/dockerfile:1
# traqq in a container: a build stage compiles the release binary (RocksDB from source: the
# first build takes 15-20 minutes on two cores), a small runtime stage runs it as a non-root
# user with its data in a volume. See the README ("Container and service").

FROM rust:1-bookworm AS build
# libclang for RocksDB's bindings, g++ to compile it. Not pinned: bookworm's security updates
# are the versions wanted, and pins break the build when they move.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libclang-dev g++ \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p traqq-cli \
    && strip target/release/traqq

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/traqq --shell /usr/sbin/nologin traqq \
    && mkdir -p /var/lib/traqq \
    && chown traqq:traqq /var/lib/traqq
COPY --from=build /src/target/release/traqq /usr/local/bin/traqq
USER 10001:10001
WORKDIR /var/lib/traqq
VOLUME ["/var/lib/traqq"]
EXPOSE 9876 9877
# Readiness over the HTTP port with bash's /dev/tcp (the image carries no HTTP client).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9877 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# Listening beyond loopback needs a token: pass TRAQQ_AUTH_TOKEN (docker run -e ...).
ENTRYPOINT ["traqq"]
CMD ["serve", "--tcp", "0.0.0.0:9876", "--http", "0.0.0.0:9877", "--data", "/var/lib/traqq"]
