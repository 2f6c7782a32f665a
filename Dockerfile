# Builds the worker, the gateway and the partner simulator; one runtime image per binary (targets
# `worker`, `api` and `partner-sim`), used by docker-compose.yml.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p delivery-worker -p delivery-api -p partner-sim

FROM debian:bookworm-slim AS runtime-base
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 app
USER app

FROM runtime-base AS worker
COPY --from=build /src/target/release/delivery-worker /usr/local/bin/delivery-worker
ENV WORKER_METRICS_BIND=0.0.0.0 WORKER_METRICS_PORT=9464
EXPOSE 9464
ENTRYPOINT ["delivery-worker"]

FROM runtime-base AS partner-sim
COPY --from=build /src/target/release/partner-sim /usr/local/bin/partner-sim
ENV PARTNER_SIM_BIND=0.0.0.0 PARTNER_SIM_PORT=8090
EXPOSE 8090
ENTRYPOINT ["partner-sim"]

FROM runtime-base AS api
COPY --from=build /src/target/release/delivery-api /usr/local/bin/delivery-api
ENV API_BIND=0.0.0.0 API_PORT=8080
EXPOSE 8080
ENTRYPOINT ["delivery-api"]
