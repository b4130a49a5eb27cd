# upswatch: `make run` starts the daemon on embedded defaults, `make test`
# runs the whole suite (installing what it needs first).
GO      ?= go
BIN     := bin/upswatch
AGENT   := bin/upswatch-agent
PKGS    := ./...
# -p 2: the integration tests start real servers; on a 2-core box more
# parallel packages only make them contend.
TESTFLAGS ?= -race -count=1 -p 2 -timeout 20m

.PHONY: all build run test deps vet fuzz bench bench-e2e bench-agent agent-check test-nut-ddl clean assets

all: build

build: assets
	$(GO) build -o $(BIN) ./cmd/upswatch
	$(GO) build -trimpath -ldflags "-s -w" -o $(AGENT) ./cmd/upswatch-agent

# upswatch-agent imports no server package and cross-compiles for
# linux/amd64, linux/arm64 and linux/arm (GOARM=7) under 15 MB each.
agent-check:
	sh scripts/agent-check.sh

# The console's scripts and styles: htmx and uPlot from the npm registry at
# the versions package-lock.json pins, bundled by esbuild into
# web/static/dist (embedded by go:embed; never committed). Rebuilt only
# when a source or the lock file changed.
UI_SRC := $(wildcard web/ui/src/*) web/ui/build.mjs web/ui/package-lock.json
assets: web/static/dist/app.js

web/static/dist/app.js: $(UI_SRC)
	cd web/ui && npm ci --no-audit --no-fund --loglevel=error && node build.mjs

run: build
	./$(BIN) serve

# deps installs mosquitto (apt) and builds influxd 1.8.10 for the
# integration tests; quiet and quick when they are already there.
deps:
	sh scripts/deps.sh

test: deps assets agent-check
	cd web/ui && node --test --test-reporter=dot test/
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)

# Every dump of NUT's device library (../shared/nut-ddl, or
# $UPSWATCH_NUT_DDL) through dummy-ups, upsd and the agent to upswatch;
# make test runs every 6th.
test-nut-ddl: deps
	UPSWATCH_NUT_DDL_ALL=1 $(GO) test -race -count=1 -run TestNUTDeviceLibrary -v ./agent

# A short fuzz run of each decoder (the seed corpora also run in `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./ingest/payload
	$(GO) test -run '^$$' -fuzz FuzzDecodeBatch -fuzztime 30s ./ups
	$(GO) test -run '^$$' -fuzz FuzzSplitWords -fuzztime 30s ./agent/nut
	$(GO) test -run '^$$' -fuzz FuzzAnswers -fuzztime 30s ./agent/nut
	$(GO) test -run '^$$' -fuzz FuzzReadRecord -fuzztime 30s ./agent/buffer
	$(GO) test -run '^$$' -fuzz FuzzOpen -fuzztime 30s ./agent/buffer

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	$(MAKE) bench-e2e

# The agent alone: its CPU and memory with 10 UPS at a 2 s poll (60 s
# window), and upsrw status change -> alert event latency.
bench-agent: deps
	$(GO) test -run '^$$' -bench . -benchtime 1x ./agent

# End to end: serve on mosquitto + InfluxDB 1.8, Telegraf 1.37.2 on the
# same (built into .cache/tools on first use, about 90 s), then embedded;
# 10,000 units. Ends with the summary table the README shows, with the
# upswatch/Telegraf ratios. See bench/README.md.
# BENCH_E2E_FLAGS=-quick for a smoke check.
bench-e2e: deps
	$(GO) run ./bench/e2e $(BENCH_E2E_FLAGS)

clean:
	rm -rf bin data
