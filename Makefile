# WADM gRPC. `make run` serves (embedded store + demo feed); `make test` runs the whole suite.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
BUF_VERSION := 1.75.0
BUF := .build/node_modules/.bin/buf
GOOGLE_API := protos/google/api
GOOGLE_RPC := protos/google/rpc

.PHONY: help venv run test test-mongo lint fmt protos check-protos buf-lint breaking bench redis-server chromium clean dev-certs

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# The server depends on the client distribution (it owns the generated code): install it first.
	$(BIN)/pip install --quiet -e './clients/python[pandas]'
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(INSTALLED) ## build the Python environment (.venv)

run: $(INSTALLED) ## serve gRPC on 127.0.0.1:50051 and HTTP/JSON on :8080 (embedded DuckDB store, demo feed)
	@echo "gRPC      $${WADM_HOST:-127.0.0.1}:$${WADM_PORT:-50051}"
	@echo "HTTP/JSON http$${WADM_TLS_CERT:+s}://$${WADM_HOST:-127.0.0.1}:$${WADM_HTTP_PORT:-8080}  (the 'wadm-grpc started' log line has both)"
	WADM_DEMO_FEED=$${WADM_DEMO_FEED:-true} WADM_CORS_ORIGINS=$${WADM_CORS_ORIGINS:-*} $(BIN)/python -m wadm_grpc serve

redis-server: ## make sure Debian's redis-server is installed (tests start their own)
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server; }

chromium: ## make sure Debian's chromium is installed (the browser tests drive it with Playwright)
	@command -v chromium >/dev/null || { \
		echo "installing chromium"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

test: $(INSTALLED) redis-server chromium ## run the whole test suite
	$(BIN)/pytest

test-mongo: $(INSTALLED) ## run the store contract suite against a real MongoDB (needs MONGODB_URI)
	@test -n "$${MONGODB_URI:-}" || { echo "set MONGODB_URI=mongodb://host:port/ first"; exit 2; }
	$(BIN)/pytest tests/contract tests/api -k "mongo and not mongomock"

$(BUF):
	npm install --silent --no-audit --no-fund --prefix .build @bufbuild/buf@$(BUF_VERSION)

$(GOOGLE_API)/annotations.proto: $(INSTALLED)
	mkdir -p $(GOOGLE_API)
	site=$$($(BIN)/python -c 'import google.api.annotations_pb2 as m, pathlib; print(pathlib.Path(m.__file__).parent)'); \
	cp "$$site/annotations.proto" "$$site/http.proto" $(GOOGLE_API)/

$(GOOGLE_RPC)/status.proto: $(INSTALLED)
	mkdir -p $(GOOGLE_RPC)
	site=$$($(BIN)/python -c 'import google.rpc.status_pb2 as m, pathlib; print(pathlib.Path(m.__file__).parent)'); \
	cp "$$site/status.proto" $(GOOGLE_RPC)/

PB := clients/python/wadm_client/pb wadm_grpc/pb

protos: $(INSTALLED) ## regenerate clients/python/wadm_client/pb (the code) and wadm_grpc/pb (its aliases) from protos/
	$(BIN)/python protos/generate.py 2>/dev/null

check-protos: protos ## fail if the committed generated code is stale
	@git diff --exit-code --stat -- $(PB) && test -z "$$(git status --porcelain -- $(PB))" \
		|| { echo "generated code is stale: run 'make protos' and commit"; exit 1; }

buf-lint: $(BUF) $(GOOGLE_API)/annotations.proto $(GOOGLE_RPC)/status.proto ## buf lint protos/
	cd protos && ../$(BUF) lint

breaking: $(BUF) $(GOOGLE_API)/annotations.proto $(GOOGLE_RPC)/status.proto ## buf breaking against main (AGAINST=ref to override)
	@# The ref's protos/ lacks the git-ignored google/ imports: compare against an export with them added.
	against=$$(mktemp -d); trap 'rm -rf "$$against"' EXIT; \
	git archive "$${AGAINST:-main}" protos | tar -x -C "$$against"; \
	cp -r protos/google "$$against/protos/"; \
	cd protos && ../$(BUF) breaking --against "$$against/protos"

lint: $(INSTALLED) buf-lint check-protos ## ruff, ruff format --check, mypy --strict, buf lint, generated-code freshness
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(INSTALLED) ## format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

TLS_DIR ?= var/tls
dev-certs: ## a dev CA, a server (localhost, 127.0.0.1) and a client certificate in var/tls/ (openssl; not for production)
	@mkdir -p $(TLS_DIR)
	@cd $(TLS_DIR) && ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes" && \
	openssl req -x509 $$ec -keyout ca.key -out ca.pem -days 30 -subj "/CN=wadm dev CA" 2>/dev/null && \
	for who in server client; do \
		if [ $$who = server ]; then ext="subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"; \
		else ext="extendedKeyUsage=clientAuth"; fi; \
		openssl req $$ec -keyout $$who.key -out $$who.csr -subj "/CN=wadm dev $$who" 2>/dev/null && \
		openssl x509 -req -in $$who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -out $$who.pem \
			-extfile <(printf "basicConstraints=CA:FALSE\n$$ext\n") 2>/dev/null && rm $$who.csr; \
	done && chmod 600 *.key && echo "$(TLS_DIR): ca.pem, server.pem + server.key, client.pem + client.key"

bench: $(INSTALLED) ## benchmarks (ratios against in-run baselines); writes bench/results/
	$(BIN)/python -m bench

clean: ## remove the environment and build outputs (not var/ data)
	rm -rf $(VENV) .build protos/google .mypy_cache .ruff_cache .pytest_cache
