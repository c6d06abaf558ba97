#!/usr/bin/env bash
# Install what `make bench` (bench/run) needs, from Debian's archive.
# Idempotent: does nothing when every package is already installed; runs
# `apt-get update` only when something has to be installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# python3 runs the harness itself (stdlib only); the rest are the load
# generators and the relays flowgate is compared with (stunnel4, v2ray and
# openssh-server for the tunnel suite; openssl makes its certificates).
PKGS=(iperf3 wrk haproxy nginx libnginx-mod-stream socat rinetd procps python3
      stunnel4 v2ray openssh-server openssh-client openssl)

missing=()
for p in "${PKGS[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps-bench: all present (${PKGS[*]})"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -E); else
        echo "deps-bench: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
    fi
fi

echo "deps-bench: installing ${missing[*]}"
# Keep the packages' own system services (nginx on :80, haproxy) from being
# started by the install: the bench runs its own instances on its own ports,
# and a service left running would be load on the machine being measured.
# A policy-rc.d that exits 101 is Debian's documented way; only add ours if
# none exists, and remove it again whatever happens.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
fi
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
