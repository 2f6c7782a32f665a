# Builds the worker, the gateway (with the web UI) and the partner simulator; one runtime image per binary (targets
# `worker`, `api` and `partner-sim`), used by docker-compose.yml.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p delivery-worker -p delivery-api -p partner-sim

# The web UI the gateway serves at /.
FROM node:22.20.0-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-save --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM debian:12.12-slim AS runtime-base
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
COPY --from=web /web/dist /usr/share/delivery-web
ENV API_BIND=0.0.0.0 API_PORT=8080 WEB_DIST=/usr/share/delivery-web
EXPOSE 8080
ENTRYPOINT ["delivery-api"]
