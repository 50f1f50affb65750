# budpipeline developer entry points (`make help` prints this block).
#
#   make run          build, then serve on http://127.0.0.1:$${APP_PORT:-8010} (private Postgres)
#   make example      run examples/hello.yaml with the CLI against `make run` (EXAMPLE=file to pick)
#   make migrate      apply the migrations and exit
#   make test         cargo test --all-targets against a Postgres (see below)
#   make lint         cargo fmt --check + clippy -D warnings + make check-sql
#   make check-sql    every SQL statement prepared against the migrated schema (src/db/check.rs)
#   make fmt          cargo fmt
#   make docs         regenerate docs/actions.md, docs/configuration.md, docs/openapi.json
#   make bench        the benchmark (src/bin/bench/), release build
#   make bench-quick  the same, short (`-- --quick`); CI runs this
#   make pg-status    whether the private Postgres of this checkout runs, and its URL
#   make pg-stop      stop the private Postgres of this checkout
#   make docker       build the container image (needs a Docker engine)
#
# Which Postgres (scripts/dev-postgres.sh decides; DATABASE_URL always wins):
#   run, migrate        DATABASE_URL, else the private server in target/pgdata on 127.0.0.1:55432
#                       (started on demand; never the shared server on 5432)
#   test, bench*        DATABASE_URL, else a server answering on 127.0.0.1:5432 where user
#                       `postgres` may log in without password and CREATE DATABASE
#                       (sqlx::test creates one database per test), else the private one.
#
# Knobs: CARGO, CARGO_FLAGS (e.g. --locked), TEST_THREADS, APP_PORT, APP_API_TOKEN, EXAMPLE.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
CARGO_FLAGS ?=
DEV_PG := ./scripts/dev-postgres.sh
# One test thread per core (cargo's default, spelled out so it can be overridden:
# `make test TEST_THREADS=1`). The database tests mostly wait on Postgres, but the
# engine tests measure leases and timers, which get flaky when the cores are oversubscribed.
TEST_THREADS ?= $(shell nproc 2>/dev/null || echo 2)
# Where `make run` keeps its generated development token (target/ is git-ignored).
DEV_TOKEN_FILE := target/dev-app-api-token

export RUST_BACKTRACE ?= 1

EXAMPLE ?= examples/hello.yaml

.PHONY: help run example migrate test lint check-sql fmt docs bench bench-quick pg-status pg-stop docker

# The comment block at the top of this file, up to its first blank line.
help:
	@sed -n '/^$$/q; s/^# \{0,1\}//; s/\$$\$$/$$/g; p' $(firstword $(MAKEFILE_LIST))

# Build first (the first build takes minutes), then say where things are, then serve.
run:
	@DATABASE_URL="$$($(DEV_PG) run)"; export DATABASE_URL; \
	$(CARGO) build $(CARGO_FLAGS) --release --bin budpipeline; \
	generated=; \
	if [ -z "$${APP_API_TOKEN:-}" ]; then \
	  if [ ! -s $(DEV_TOKEN_FILE) ]; then \
	    mkdir -p $(dir $(DEV_TOKEN_FILE)); \
	    (umask 077; printf 'dev-%s\n' "$$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')" > $(DEV_TOKEN_FILE)); \
	  fi; \
	  APP_API_TOKEN="$$(cat $(DEV_TOKEN_FILE))"; export APP_API_TOKEN; generated=1; \
	fi; \
	url="http://127.0.0.1:$${APP_PORT:-8010}"; \
	if [ -n "$$generated" ]; then shown="$$APP_API_TOKEN"; else shown='$$APP_API_TOKEN'; fi; \
	echo; \
	echo "budpipeline (dev)"; \
	echo "  database  $$DATABASE_URL"; \
	echo "  service   $$url"; \
	echo "  API docs  $$url/docs   (no token needed there, nor for /openapi.json, /health, /ready, /metrics)"; \
	if [ -n "$$generated" ]; then \
	  echo "  token     $$APP_API_TOKEN   (generated, kept in $(DEV_TOKEN_FILE); set APP_API_TOKEN to choose your own)"; \
	else \
	  echo "  token     from APP_API_TOKEN in your environment"; \
	fi; \
	echo "  try       in another terminal, from this directory:"; \
	echo "              make example                      (runs $(EXAMPLE) with the CLI and watches it)"; \
	echo "              curl -s -H \"dapr-api-token: $$shown\" $$url/workflows"; \
	echo "  Dapr      none needed locally: built-in actions run; Bud actions and event publishing wait for a sidecar"; \
	echo; \
	exec $(CARGO) run -q $(CARGO_FLAGS) --release --bin budpipeline -- serve

# The CLI against the service of `make run` (it finds the token in $(DEV_TOKEN_FILE)).
example:
	@$(CARGO) run -q $(CARGO_FLAGS) --release --bin budpipeline -- run $(EXAMPLE)

migrate:
	@DATABASE_URL="$$($(DEV_PG) run)"; export DATABASE_URL; \
	echo "migrating $$DATABASE_URL"; \
	exec $(CARGO) run $(CARGO_FLAGS) --release -- migrate

test:
	@DATABASE_URL="$$($(DEV_PG) test)"; export DATABASE_URL; \
	echo "test database: $$DATABASE_URL (test threads: $(TEST_THREADS))"; \
	$(CARGO) test $(CARGO_FLAGS) --all-targets -- --test-threads=$(TEST_THREADS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --all-targets -- -D warnings
	@$(MAKE) --no-print-directory check-sql

# What sqlx's compile-time macros would catch, for every statement, before any
# other test runs: each is prepared against a freshly migrated database and
# its rows read into the code's row type (src/db/check.rs); the unit tests
# check that no statement of src/db is left off the lists.
check-sql:
	@DATABASE_URL="$$($(DEV_PG) test)"; export DATABASE_URL; \
	$(CARGO) test $(CARGO_FLAGS) --lib -- db::check; \
	$(CARGO) test $(CARGO_FLAGS) --test it -- schema::every_statement import_legacy::every_statement schema::the_statement_check

fmt:
	$(CARGO) fmt --all

# The generated documentation; tests/it/docs.rs fails when it is out of date.
docs:
	$(CARGO) run -q $(CARGO_FLAGS) --bin budpipeline -- docs write docs

# Both binaries in one cargo invocation, then the bench without rebuilding:
# built apart (`cargo run --bin bench`, then the bench's own build of the
# service), cargo resolves their dependency units differently and rebuilds
# much of the tree on every run.
BENCH_BIN = "$${CARGO_TARGET_DIR:-target}/release/bench"

bench:
	@DATABASE_URL="$$($(DEV_PG) test)"; export DATABASE_URL; \
	echo "bench database: $$DATABASE_URL"; \
	$(CARGO) build $(CARGO_FLAGS) --release --bin budpipeline --bin bench; \
	$(BENCH_BIN) --no-build

bench-quick:
	@DATABASE_URL="$$($(DEV_PG) test)"; export DATABASE_URL; \
	echo "bench database: $$DATABASE_URL"; \
	$(CARGO) build $(CARGO_FLAGS) --release --bin budpipeline --bin bench; \
	$(BENCH_BIN) --quick --no-build

pg-status:
	@$(DEV_PG) status || true

pg-stop:
	@$(DEV_PG) stop

docker:
	docker build -t budpipeline:dev .
