# Delivery-order service. `make run` starts the local stack, `make test` runs every test.
SHELL := /bin/bash

.DEFAULT_GOAL := help
.PHONY: help run test security build lint bench chaos demo token diagrams web-types capture-histories flood dr-drill clean-data validate-deploy

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

run: ## Start Temporal (Web UI on 8233), the partner simulator, the worker and the gateway (8080); WITH_PROMETHEUS=1 adds Prometheus (9090); Ctrl-C stops them
	@scripts/run-local.sh

test: ## Run every test against a fresh Temporal dev server, PostgreSQL and Redis
	@scripts/test.sh

security: ## schemathesis against the gateway's /openapi.json with a token of every role, longer than make test's pass (SCHEMATHESIS_MAX_EXAMPLES, default 100)
	@SCHEMATHESIS_MAX_EXAMPLES=$${SCHEMATHESIS_MAX_EXAMPLES:-100} TEST_ARGS="-p delivery-tests --test integration -- api_fuzzing:: --nocapture" scripts/test.sh

validate-deploy: ## Validate k8s/, deploy/cloudformation/ and docker-compose.yml (kubernetes-validate, checkov, cfn-lint, compose schema)
	@scripts/validate-deploy.sh

build: ## Build every crate
	cargo build --workspace --all-targets

lint: ## rustfmt check and clippy with warnings as errors
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

demo: ## Pay for a book through the running gateway; watch the partner deliver it; confirm it
	@scripts/demo.sh

token: ## Print a development token: make token ROLE=operator SUB=alice (JWT_SECRET as make run)
	@JWT_SECRET=$${JWT_SECRET:-dev-only-secret-change-me-0123456789abcdef} cargo run -q -p delivery-api -- token --role $(or $(ROLE),operator) --sub $(or $(SUB),alice)

bench: ## Start the stack from release builds and print throughput / latency figures (docs/performance.md)
	@scripts/bench.sh

chaos: ## Kill, cut and flood every part of the stack (2 workers, 2 gateways, release builds) under load, then check every order (CHAOS_MINUTES, default 5; docs/reliability.md)
	@scripts/chaos.sh

diagrams: ## Regenerate the PlantUML diagrams and the CloudFormation graph template from the graph
	cargo run -q -p delivery-workflows --bin graphgen -- resources deploy/cloudformation

web-types: ## Regenerate web/src/types.ts from the gateway's OpenAPI document
	cargo run -q -p delivery-api -- typescript > web/src/types.ts

capture-histories: ## Re-record tests/histories from the scenario tests (move the current ones into a folder of their own first)
	@TEST_ARGS="-p delivery-tests --test integration -- lifecycle:: batches:: integrity:: integrity_flood::" CAPTURE_HISTORIES=1 scripts/test.sh

flood: ## 20,000 duplicate, refused and malformed messages against one order (FLOOD_MESSAGES, FLOOD_IN_FLIGHT)
	@FLOOD_MESSAGES=$${FLOOD_MESSAGES:-20000} TEST_ARGS="-p delivery-tests --test integration -- integrity_flood:: --nocapture" scripts/test.sh

dr-drill: ## Time rebuild-read-model over DR_ORDERS created-and-cancelled orders (default 10000; docs/runbooks/restore.md)
	@DR_ORDERS=$${DR_ORDERS:-10000} TEST_ARGS="-p delivery-tests --test integration -- disaster_recovery::drill_rebuild_timing --ignored --exact --nocapture" scripts/test.sh

clean-data: ## Forget the local Temporal data (.data/)
	rm -rf .data
