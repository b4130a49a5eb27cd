# upswatch: `make run` starts the daemon on embedded defaults, `make test`
# runs the whole suite (installing what it needs first).
GO      ?= go
BIN     := bin/upswatch
PKGS    := ./...
# -p 2: the integration tests start real servers; on a 2-core box more
# parallel packages only make them contend.
TESTFLAGS ?= -race -count=1 -p 2 -timeout 20m

.PHONY: all build run test deps vet fuzz bench bench-e2e clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/upswatch

run: build
	./$(BIN) serve

# deps installs mosquitto (apt) and builds influxd 1.8.10 for the
# integration tests; quiet and quick when they are already there.
deps:
	sh scripts/deps.sh

test: deps
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
