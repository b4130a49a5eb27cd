#!/bin/sh
# agent-check.sh checks that upswatch-agent stays small and portable:
#   - it imports none of the server's heavy dependencies (NATS server,
#     SQLite, the phone providers, InfluxDB, the embedded MQTT broker);
#   - it cross-compiles, stripped as shipped (-s -w), for linux/amd64,
#     linux/arm64 and linux/arm (GOARM=7, Raspberry Pi), each at most
#     15 MB.
# `make test` runs it; after the first run the builds come from Go's cache.
set -eu

GO=${GO:-go}
max_bytes=$((15 * 1024 * 1024))
repo_root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
cd "$repo_root"

forbidden='nats-server|modernc.org/sqlite|firebase.google.com|sideshow/apns2|influxdb-client-go|mochi-mqtt|upswatch/upswatch/(app|api|ingest|rules|notify|store|registry|bus|broker)($|/)'
if bad=$($GO list -deps ./cmd/upswatch-agent | grep -E "$forbidden"); then
	echo "agent-check: cmd/upswatch-agent imports server packages:" >&2
	echo "$bad" >&2
	exit 1
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for target in linux/amd64 linux/arm64 linux/arm/7; do
	goos=${target%%/*}
	rest=${target#*/}
	goarch=${rest%%/*}
	goarm=
	[ "$goarch" = arm ] && goarm=${rest#*/}
	bin=$out/upswatch-agent-$goos-$goarch
	GOOS=$goos GOARCH=$goarch GOARM=$goarm CGO_ENABLED=0 \
		$GO build -trimpath -ldflags "-s -w" -o "$bin" ./cmd/upswatch-agent
	size=$(wc -c <"$bin")
	if [ "$size" -gt "$max_bytes" ]; then
		echo "agent-check: $target binary is $size bytes, over 15 MB" >&2
		exit 1
	fi
	echo "agent-check: $target $size bytes"
done
