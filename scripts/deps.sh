#!/bin/sh
# Installs the Debian packages flowgate needs. Idempotent: when everything
# is present it only runs dpkg-query. Usage: scripts/deps.sh build|run|test
set -eu

BUILD_PKGS="build-essential cmake ninja-build pkg-config libjansson-dev libssl-dev libc-ares-dev libsqlite3-dev libsodium-dev libwslay-dev libmicrohttpd-dev libnftables-dev"
TEST_PKGS="libcmocka-dev clang libclang-rt-14-dev clang-format python3 python3-pytest iproute2 nftables curl procps openssl iptables"

case "${1:-build}" in
build) want="$BUILD_PKGS" ;;
run) want="$BUILD_PKGS curl" ;;
test) want="$BUILD_PKGS $TEST_PKGS" ;;
*) echo "usage: $0 build|run|test" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
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
