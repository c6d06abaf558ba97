#!/bin/sh
# Browser test of the web UI: a real `flowgate server`, a real agent enrolled
# with the command the page shows, Debian's chromium driven by playwright-core.
# Screenshots and logs go to tests/e2e/artifacts/ (git-ignored).
#
#   FLOWGATE_BIN   the flowgate binary (default build-asan/flowgate)
#   E2E_HEADED=1   not supported (no display); E2E_KEEP=1 keeps the run dir
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${FLOWGATE_BIN:=$root/build-asan/flowgate}"
export FLOWGATE_BIN
if [ ! -x "$FLOWGATE_BIN" ]; then
	echo "tests/e2e: $FLOWGATE_BIN is not built (make asan)" >&2
	exit 2
fi
if [ ! -f "$root/web/dist/index.html" ]; then
	echo "tests/e2e: web/dist is not built (make web)" >&2
	exit 2
fi
if [ ! -x /usr/bin/chromium ]; then
	echo "tests/e2e: /usr/bin/chromium missing (scripts/deps.sh test installs it)" >&2
	exit 2
fi
cd "$root/web"
exec node --test "$here/ui.test.mjs" "$here/tunnels.test.mjs"
