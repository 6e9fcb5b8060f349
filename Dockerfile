# The sluice binary with the example plugins and configs.
#   docker build -t sluice .
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release -p sluice \
 && cargo build --target wasm32-wasip2 --profile plugin -p passthrough -p mask-pii -p route-events -p shop-metrics \
 && mkdir -p /out/plugins \
 && cp target/release/sluice /out/ \
 && cp target/wasm32-wasip2/plugin/passthrough.wasm target/wasm32-wasip2/plugin/mask_pii.wasm \
       target/wasm32-wasip2/plugin/route_events.wasm target/wasm32-wasip2/plugin/shop_metrics.wasm \
       /out/plugins/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/sluice /usr/local/bin/sluice
COPY --from=build /out/plugins /app/build/plugins
COPY examples /app/examples
WORKDIR /app
ENV SLUICE_CACHE_DIR=/var/cache/sluice
ENTRYPOINT ["sluice"]
CMD ["run", "/app/examples/docker.toml"]
