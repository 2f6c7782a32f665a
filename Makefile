# Delivery-order service. `make run` starts the local stack, `make test` runs every test.
SHELL := /bin/bash
TEMPORAL := .venv/bin/temporal
TEMPORAL_ADDRESS ?= 127.0.0.1:7233

.DEFAULT_GOAL := help
.PHONY: help run test build lint demo diagrams capture-histories clean-data

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

run: ## Start Temporal (Web UI on 8233), the partner simulator and the worker; Ctrl-C stops them
	@scripts/run-local.sh

test: ## Run every test against a fresh Temporal dev server, PostgreSQL and Redis
	@scripts/test.sh

build: ## Build every crate
	cargo build --workspace --all-targets

lint: ## rustfmt check and clippy with warnings as errors
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

$(TEMPORAL):
	@source scripts/lib.sh && ensure_temporal_cli

demo: $(TEMPORAL) ## Start one delivery on the running stack from resources/examples/delivery-order-input.json
	@mkdir -p .run; id=$$(python3 -c 'import uuid; print(uuid.uuid4())'); \
	sed "s/00000000-0000-4000-8000-000000000001/$$id/" resources/examples/delivery-order-input.json > .run/demo-order.json; \
	$(TEMPORAL) workflow start --address $(TEMPORAL_ADDRESS) --task-queue delivery-orders --type DeliveryOrderWorkflow \
	  --workflow-id delivery-order-$$id --input-file .run/demo-order.json && \
	echo && echo "Follow it:  $(TEMPORAL) workflow query --address $(TEMPORAL_ADDRESS) -w delivery-order-$$id --name state" && \
	echo "Web UI:     http://localhost:8233/namespaces/default/workflows/delivery-order-$$id" && \
	echo "Confirm:    $(TEMPORAL) workflow update execute --address $(TEMPORAL_ADDRESS) -w delivery-order-$$id --name apply_event \\" && \
	echo "              --input '{\"event_id\":\"confirm-1\",\"type\":\"CONFIRMED\",\"data\":{},\"actor\":{\"kind\":\"customer\",\"id\":\"cust-42\"}}'"

diagrams: ## Regenerate the PlantUML diagrams from the graph and the data model
	cargo run -q -p delivery-workflows --bin graphgen -- resources

capture-histories: ## Re-record tests/histories from the scenario tests (only for intended incompatible changes)
	@TEST_ARGS="-p delivery-tests --test lifecycle" CAPTURE_HISTORIES=1 scripts/test.sh

clean-data: ## Forget the local Temporal data (.data/)
	rm -rf .data
