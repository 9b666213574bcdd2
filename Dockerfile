# ario-mlflow-worker container image.
#
#   docker build -t ario-mlflow-worker .                       # compiles a release build inside
#   docker build --build-arg BINARY=prebuilt -t … .            # copies dist/ario-mlflow-worker
#                                                              # (a release build from the host)
# The runtime image is Debian slim with the binary's only libraries (libssl3, zlib), CA
# certificates and curl for HEALTHCHECK; it runs as an unprivileged user, keeps its state under
# the /var/lib/ario-mlflow-worker volume and bakes in no secret: the signing key, the wallet and
# the webhook secret come from the environment or mounted files at run time.
ARG RUST_IMAGE=docker.io/library/rust:1.89-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
ARG BINARY=build

FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ario-mlflow-worker \
 && install -D target/release/ario-mlflow-worker /out/ario-mlflow-worker

FROM scratch AS prebuilt
COPY dist/ario-mlflow-worker /out/ario-mlflow-worker

FROM ${BINARY} AS binary

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ario \
 && useradd --system --uid 10001 --gid ario --home-dir /var/lib/ario-mlflow-worker --shell /usr/sbin/nologin ario \
 && install -d -o ario -g ario -m 0700 /var/lib/ario-mlflow-worker /var/lib/ario-mlflow-wallet
COPY --from=binary /out/ario-mlflow-worker /usr/local/bin/ario-mlflow-worker
USER 10001:10001
ENV HOME=/var/lib/ario-mlflow-worker \
    ARIO_MLFLOW_STATE_DIR=/var/lib/ario-mlflow-worker/state \
    ARIO_MLFLOW_LISTEN=0.0.0.0:9847 \
    ARIO_MLFLOW_LOG_FORMAT=json
VOLUME ["/var/lib/ario-mlflow-worker"]
EXPOSE 9847
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9847/healthz >/dev/null || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["ario-mlflow-worker"]
CMD ["run"]
