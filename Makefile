# upswatch: `make run` starts the daemon on embedded defaults, `make test`
# runs the whole suite (installing what it needs first).
GO      ?= go
BIN     := bin/upswatch
PKGS    := ./...
# -p 2: the integration tests start real servers; on a 2-core box more
# parallel packages only make them contend.
TESTFLAGS ?= -race -count=1 -p 2 -timeout 20m

.PHONY: all build run test deps vet fuzz bench bench-e2e clean assets

all: build

build: assets
	$(GO) build -o $(BIN) ./cmd/upswatch

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

test: deps assets
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)

# A short fuzz run of each decoder (the seed corpora also run in `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./ingest/payload
	$(GO) test -run '^$$' -fuzz FuzzDecodeBatch -fuzztime 30s ./ups

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	$(MAKE) bench-e2e

# End to end: serve on mosquitto + InfluxDB 1.8 (and Telegraf side by side
# when on PATH), then embedded; 10,000 units. See bench/README.md.
# BENCH_E2E_FLAGS=-quick for a smoke check.
bench-e2e: deps
	$(GO) run ./bench/e2e $(BENCH_E2E_FLAGS)

clean:
	rm -rf bin data
