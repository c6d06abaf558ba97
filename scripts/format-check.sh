#!/bin/sh
# Fails when a C file differs from what .clang-format makes of it.
set -eu
cd "$(dirname "$0")/.."
bad=0
for f in $(git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'fuzz/*.c') $(git ls-files --others --exclude-standard 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'fuzz/*.c'); do
	if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
		echo "format: $f differs from .clang-format (run: make format)"
		bad=1
	fi
done
exit $bad
