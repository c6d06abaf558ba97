#!/bin/sh
# Installs the Debian packages flowgate needs. Idempotent: when everything
# is present it only runs dpkg-query. Usage: scripts/deps.sh build|run|web|test
# (web: what building the UI in web/ needs; build, run and test include it
# when web/ exists, since `make` builds the UI too).
set -eu

BUILD_PKGS="build-essential cmake ninja-build pkg-config libjansson-dev libssl-dev libc-ares-dev libsqlite3-dev libsodium-dev libwslay-dev libmicrohttpd-dev libnftables-dev"
# Node.js and npm build the UI (Vite); a node from another source that already
# provides both commands is used as it is.
WEB_PKGS="nodejs npm"
# chromium drives the UI tests (Playwright); the CJK font renders the
# Chinese pages in their screenshots.
TEST_PKGS="chromium fonts-wqy-microhei libcmocka-dev clang libclang-rt-14-dev clang-format python3 python3-pytest iproute2 nftables curl procps openssl iptables"

here=$(dirname "$0")
web=""
[ -f "$here/../web/package.json" ] && web="$WEB_PKGS"

case "${1:-build}" in
build) want="$BUILD_PKGS $web" ;;
run) want="$BUILD_PKGS $web curl" ;;
web) want="$WEB_PKGS" ;;
test) want="$BUILD_PKGS $web $TEST_PKGS" ;;
*) echo "usage: $0 build|run|web|test" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
	case "$p" in
	nodejs) command -v node >/dev/null 2>&1 && continue ;;
	npm) command -v npm >/dev/null 2>&1 && continue ;;
	esac
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "scripts/deps.sh: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
