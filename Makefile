# Thin wrapper over CMake + Ninja. `make run` and `make test` install what
# they need first (scripts/deps.sh is idempotent and quick when all is there).

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
WERROR     ?= ON
FUZZ_SECONDS ?= 20

.PHONY: all build deps asan fuzz-build test unit fuzz system run bench format format-check clean

all: build

deps:
	@scripts/deps.sh build

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFG_WERROR=$(WERROR)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD_ASAN)/build.ninja:
	cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFG_SANITIZE=ON -DFG_WERROR=$(WERROR)

asan: deps $(BUILD_ASAN)/build.ninja
	ninja -C $(BUILD_ASAN)

$(BUILD_FUZZ)/build.ninja:
	CC=clang cmake -S . -B $(BUILD_FUZZ) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFG_FUZZ=ON -DFG_TESTS=OFF -DFG_WERROR=$(WERROR)

fuzz-build: deps $(BUILD_FUZZ)/build.ninja
	ninja -C $(BUILD_FUZZ)

# Every test: unit (under ASan/UBSan), fuzzers for a bounded time, then the
# system tests in network namespaces against the ASan/UBSan binary.
test:
	@scripts/deps.sh test
	$(MAKE) --no-print-directory format-check build asan fuzz-build
	$(MAKE) --no-print-directory unit fuzz system

unit:
	cd $(BUILD_ASAN) && ctest --output-on-failure

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
