# See https://tech.davis-hansson.com/p/make/
SHELL := bash
.DELETE_ON_ERROR:
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --warn-undefined-variables
MAKEFLAGS += --no-builtin-rules
MAKEFLAGS += --no-print-directory

BIN := $(abspath .tmp/bin)
export PATH := $(BIN):$(abspath web/node_modules/.bin):$(PATH)
GOTEST_FLAGS ?=
STATICCHECK_VERSION := v0.8.2
CHART := deploy/helm/proglog
GRPCURL_VERSION := v1.9.3
BENCH ?= .
BENCHTIME ?= 1s
RECORDS ?= 10000000
RSS_RECORDS ?= 2000000
CHAOS_DURATION ?= 5m
CHAOS_ROUNDS ?= 0
CHAOS_SEED ?=
CHAOS_FAULTS ?=
IMAGE ?= proglog:dev
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# podman if installed, else docker; empty if neither (make image says so).
CONTAINER_TOOL ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null || true)

.PHONY: help
help: ## Describe useful make targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## .*$$' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "%-16s %s\n", $$1, $$2}'

.PHONY: check
check: setup lint test-all checkgenerate ## Run everything CI runs (installs what a fresh machine lacks)

.PHONY: build
build: ## Build the proglog binary into .tmp/bin
	go build -o $(BIN)/proglog ./cmd/proglog

.PHONY: run
run: ## Start a single development node (data in ./data)
	go run ./cmd/proglog serve

.PHONY: image
image: ## Build the container image (IMAGE=proglog:dev) with podman, else docker
	@if [[ -z "$(CONTAINER_TOOL)" ]]; then echo "make image needs podman or docker: apt-get install podman" >&2; exit 1; fi
	rm -rf .tmp/image
	mkdir -p .tmp/image/rootfs/etc .tmp/image/rootfs/var/lib .tmp/image/data
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/var/lib/proglog:/sbin/nologin\n' >.tmp/image/rootfs/etc/passwd
	printf 'root:x:0:\nnonroot:x:65532:\n' >.tmp/image/rootfs/etc/group
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o .tmp/image/proglog ./cmd/proglog
	$(CONTAINER_TOOL) build --file Containerfile --tag $(IMAGE) \
		--build-arg VERSION=$(VERSION) --build-arg REVISION="$$(git rev-parse HEAD)" \
		--build-arg CREATED="$$(git log -1 --format=%cI)" .tmp/image

.PHONY: test
test: ## Run the fast test suite with the race detector
	go test -race -count=1 $(GOTEST_FLAGS) ./...

.PHONY: test-all
test-all: setup ## Run every test, the slow tiers too: crash, disk-full, gRPC tools, browser
	PROGLOG_ARTIFACTS=$(abspath .tmp/artifacts) go test -race -count=1 -tags slow -timeout 20m $(GOTEST_FLAGS) ./...

.PHONY: bench
bench: ## Run the Go benchmarks (BENCH=regexp BENCHTIME=1s)
	go test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem ./...

.PHONY: bench-cluster
bench-cluster: ## Batched produce: one node vs a three-node cluster, separate processes
	scripts/bench-cluster.sh

.PHONY: bench-replication
bench-replication: ## The stream produce, one node then three, with each process's CPU seconds (ROUNDS=n WINDOW=n CLIENTS=n; TMPDIR=/dev/shm for no disk)
	scripts/bench-replication.sh

.PHONY: bench-topics
bench-topics: ## Topics on three nodes: 1 vs 12 partitions, leaders per node, idle cost of 300 partitions
	go build -o .tmp/proglog-bench ./cmd/proglog
	scripts/bench-topics.sh .tmp/proglog-bench

.PHONY: bench-restart
bench-restart: ## Restart after kill -9 with 10M records (RECORDS=n): time to first ack, RSS, disk
	scripts/bench-restart.sh $(RECORDS)

.PHONY: bench-rss
bench-rss: ## Peak RSS (VmHWM, RssAnon, RssFile) and records/s while producing 2M records (RSS_RECORDS=n): one node, three runs, then three nodes
	scripts/bench-rss.sh $(RSS_RECORDS)

.PHONY: chaos
chaos: ## Chaos soak, not in CI: faults on a 3-node cluster under load (CHAOS_DURATION=5m CHAOS_SEED= CHAOS_FAULTS=)
	mkdir -p .tmp/chaos
	CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_ROUNDS=$(CHAOS_ROUNDS) CHAOS_SEED=$(CHAOS_SEED) CHAOS_FAULTS=$(CHAOS_FAULTS) \
		CLUSTER_TEST_LOG_DIR=$(abspath .tmp/chaos) \
		go test -tags 'slow chaos' -count=1 -v -run '^TestChaosSoak$$' -timeout 2h ./cmd/proglog/

.PHONY: lint
lint: $(BIN)/staticcheck web/node_modules helm-lint ## Vet, staticcheck, gofmt, buf lint and the Helm chart
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	go vet -tags slow ./...
	go vet -tags 'slow chaos' ./...
	$(BIN)/staticcheck -tags slow ./...
	buf lint

.PHONY: helm-lint
helm-lint: $(BIN)/chartcheck ## Lint the Helm chart (helm lint --strict) and render it with each ci/ value set
	cd deploy/chartcheck && go vet ./... && test -z "$$(gofmt -l .)"
	@for values in $(CHART)/ci/*.yaml; do \
		echo "chartcheck lint/template $(CHART) -f $$values"; \
		$(BIN)/chartcheck lint $(CHART) -f "$$values" >/dev/null && \
		$(BIN)/chartcheck template $(CHART) -f "$$values" >/dev/null || exit 1; done

.PHONY: generate
generate: web/node_modules ## Regenerate gen/ and the web bundle from pinned tools
	buf generate
	$(MAKE) web

.PHONY: web
web: web/node_modules ## Rebuild the embedded web bundle
	@if [[ -f web/build.mjs ]]; then cd web && node build.mjs; fi

.PHONY: checkgenerate
checkgenerate: generate ## Fail if generated code differs from what is committed
	@if [[ -n "$$(git status --porcelain -- gen web)" ]]; then \
		git status --porcelain -- gen web; git diff -- gen web | head -50; \
		echo "generated code is out of date: run make generate" >&2; exit 1; fi

.PHONY: setup
setup: web/node_modules $(BIN)/grpcurl $(BIN)/staticcheck $(BIN)/chartcheck ## Install tools the tests need (npm packages, grpcurl, chartcheck, chromium, iproute2, podman)
	@if ! command -v chromium >/dev/null || ! command -v pk12util >/dev/null || ! command -v ip >/dev/null || ! command -v podman >/dev/null; then \
		if [[ $$(id -u) == 0 ]]; then apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium libnss3-tools iproute2 podman >/dev/null; \
		else echo "chromium, libnss3-tools, iproute2 and podman are needed: apt-get install chromium libnss3-tools iproute2 podman" >&2; exit 1; fi; fi

web/node_modules: web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(BIN)/staticcheck:
	GOBIN=$(BIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# helm lint and helm template from Helm's own packages (deploy/chartcheck,
# a module of its own): half the compile time of the helm CLI.
$(BIN)/chartcheck: deploy/chartcheck/go.mod deploy/chartcheck/go.sum deploy/chartcheck/main.go
	cd deploy/chartcheck && go build -o $(BIN)/chartcheck .

$(BIN)/grpcurl:
	GOBIN=$(BIN) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

.PHONY: clean
clean: ## Remove build output and installed tools
	rm -rf .tmp
