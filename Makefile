# Thin wrapper over CMake + Ninja. `make run` and `make test` install what
# they need first (scripts/deps.sh is idempotent and quick when all is there).

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
WERROR     ?= ON
FUZZ_SECONDS ?= 20

.PHONY: all build deps asan fuzz-build test unit fuzz system run bench format format-check clean web web-unit e2e

# The web UI (web/, React + Vite) is built by `make` whenever web/ exists.
# npm ci runs only when node_modules is missing or the lock file changed;
# vite build only when a source file is newer than web/dist.
WEB := $(if $(wildcard web/package.json),web,)
WEB_SRC := $(if $(WEB),$(shell find web/src web/index.html web/vite.config.js web/tailwind.config.js web/postcss.config.js -type f 2>/dev/null),)

all: build

deps:
	@scripts/deps.sh build

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFG_WERROR=$(WERROR)

build: deps $(BUILD)/build.ninja $(WEB)
	ninja -C $(BUILD)

web/node_modules/.fg-installed: web/package-lock.json web/package.json
	@scripts/deps.sh web
	@# npm 11.19's ci refuses the lock file npm itself writes (it lists only this
	@# platform's optional rollup/esbuild binaries); install from the same lock
	@# without rewriting it then.
	cd web && (npm ci --no-audit --no-fund 2>/dev/null || npm install --no-save --no-audit --no-fund)
	@touch $@

web/dist/index.html: web/node_modules/.fg-installed $(WEB_SRC)
	cd web && npm run --silent build
	@touch $@

web: $(if $(WEB),web/dist/index.html,)

$(BUILD_ASAN)/build.ninja:
	cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFG_SANITIZE=ON -DFG_WERROR=$(WERROR)

asan: deps $(BUILD_ASAN)/build.ninja
	ninja -C $(BUILD_ASAN)

$(BUILD_FUZZ)/build.ninja:
	CC=clang cmake -S . -B $(BUILD_FUZZ) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFG_FUZZ=ON -DFG_TESTS=OFF -DFG_WERROR=$(WERROR)

fuzz-build: deps $(BUILD_FUZZ)/build.ninja
	ninja -C $(BUILD_FUZZ)

# Every test: unit (under ASan/UBSan), fuzzers for a bounded time, then the
# system tests in network namespaces against the ASan/UBSan binary, then
# the UI's units and its browser test.
test:
	@scripts/deps.sh test
	$(MAKE) --no-print-directory format-check build asan fuzz-build
	$(MAKE) --no-print-directory unit fuzz system $(if $(WEB),web-unit e2e,)

unit:
	cd $(BUILD_ASAN) && ctest --output-on-failure

# Vitest units of the UI's own logic (formatting, validation, i18n).
web-unit: web/node_modules/.fg-installed
	cd web && npx --no-install vitest run

# Playwright + Debian chromium against a real server and a real agent.
e2e: web asan
	FLOWGATE_BIN=$(CURDIR)/$(BUILD_ASAN)/flowgate tests/e2e/run.sh

fuzz:
	@scripts/run-fuzzers.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

system:
	FLOWGATE_BIN=$(CURDIR)/$(BUILD_ASAN)/flowgate /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/system

run:
	@scripts/deps.sh run
	$(MAKE) --no-print-directory build
	@scripts/run.sh

bench: build
	bench/run

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'fuzz/*.c')

format-check:
	@scripts/format-check.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
