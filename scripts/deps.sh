#!/bin/sh
# deps.sh installs the external servers the integration tests run against:
#   - mosquitto (and mosquitto-clients) from the distribution's apt
#     repository, when missing;
#   - NUT's upsd and dummy-ups driver (nut-server), upsrw/upsc
#     (nut-client) and NSS's certutil (libnss3-tools) from apt, when
#     missing, for upswatch-agent's tests;
#   - influxd 1.8.10 (pure Go, built from source with `go install`) into the
#     tools cache dir, when missing.
#
# It is idempotent and silent when everything is already there, so `make
# test` can call it every time. CI runs it on a clean machine.
#
# UPSWATCH_TOOLS_DIR overrides the tools dir (default <repo>/.cache/tools);
# internal/testenv looks in the same place.
set -eu

INFLUXD_VERSION=v1.8.10

repo_root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
tools_dir=${UPSWATCH_TOOLS_DIR:-$repo_root/.cache/tools}

have_mosquitto() {
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
}

if ! have_mosquitto || ! command -v mosquitto_pub >/dev/null 2>&1; then
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "deps.sh: mosquitto is missing and apt-get is not available; install mosquitto >= 2.0 by hand" >&2
		exit 1
	fi
	sudo=
	if [ "$(id -u)" -ne 0 ]; then
		sudo=sudo
	fi
	echo "deps.sh: installing mosquitto with apt-get" >&2
	$sudo apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		mosquitto mosquitto-clients >/dev/null
	# The Debian package may start a system-wide broker on port 1883, the
	# embedded broker's default: stop and disable it (the tests start their
	# own brokers on free ports).
	$sudo systemctl disable --now mosquitto >/dev/null 2>&1 || $sudo service mosquitto stop >/dev/null 2>&1 || true
fi

# NUT for the agent's tests: they run /lib/nut/upsd and /lib/nut/dummy-ups
# directly with their own config dirs, never the system's service.
# libnss3-tools (certutil) makes the certificate database of the upsd that
# offers STARTTLS (Debian's upsd is built with NSS).
if [ ! -x /lib/nut/upsd ] || [ ! -x /lib/nut/dummy-ups ] || ! command -v upsrw >/dev/null 2>&1 ||
	! command -v certutil >/dev/null 2>&1; then
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "deps.sh: NUT is missing and apt-get is not available; install nut-server and nut-client (NUT >= 2.8) by hand" >&2
		exit 1
	fi
	sudo=
	if [ "$(id -u)" -ne 0 ]; then
		sudo=sudo
	fi
	echo "deps.sh: installing nut-server, nut-client and libnss3-tools with apt-get" >&2
	$sudo apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		nut-server nut-client libnss3-tools >/dev/null
	# The packages' services stay off: with no /etc/nut configuration
	# they do not start (MODE=none), and the tests use their own.
	$sudo systemctl disable --now nut-server nut-monitor nut-driver.target >/dev/null 2>&1 || true
fi

# The binary name carries the version so a version bump rebuilds it; the
# test helper (internal/testenv) uses the same name.
influxd_bin=$tools_dir/influxd-$INFLUXD_VERSION
if [ ! -x "$influxd_bin" ]; then
	echo "deps.sh: building influxd $INFLUXD_VERSION into $tools_dir (about a minute)" >&2
	mkdir -p "$tools_dir"
	build_dir=$(mktemp -d "$tools_dir/build.XXXXXX")
	trap 'rm -rf "$build_dir"' EXIT
	# Outside the module: GOFLAGS=-mod=mod and go.work would otherwise
	# interfere with installing a foreign main package at a version.
	# main.version feeds the X-Influxdb-Version header, which clients use
	# to tell a 1.x server from a 2.x one; a plain `go install` says
	# "unknown".
	(cd "$build_dir" && GOWORK=off GOFLAGS= GOBIN="$build_dir" \
		go install -ldflags "-X main.version=${INFLUXD_VERSION#v}" \
		"github.com/influxdata/influxdb/cmd/influxd@$INFLUXD_VERSION")
	# Rename is atomic: a concurrent test never sees a half-written binary.
	mv "$build_dir/influxd" "$influxd_bin"
fi

# The console's browser tests drive Debian's Chromium (a browser cannot be
# downloaded here), and its assets are built with node and npm.
apt_install() {
	sudo=
	if [ "$(id -u)" -ne 0 ]; then
		sudo=sudo
	fi
	echo "deps.sh: installing $* with apt-get" >&2
	$sudo apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if ! command -v chromium >/dev/null 2>&1; then
	apt_install chromium fonts-noto-core
fi
if ! command -v npm >/dev/null 2>&1; then
	apt_install nodejs npm
fi
