# Thin wrapper around CMake (the build entry point, see CMakeLists.txt).
BUILD ?= build
PORTABLE ?= build-portable
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all setup setup-portable build portable test bench bench-go demo dist clean

all: build

# What the build needs (scripts/setup.sh): go, gcc, g++, make, cmake, and
# for the portable build ccache when it can be had. Missing tools are
# installed with apt-get when running as root; otherwise it stops with one
# line naming them and the command that installs them. Milliseconds when
# everything is there.
setup:
	@scripts/setup.sh
setup-portable:
	@scripts/setup.sh --ccache

$(BUILD)/CMakeCache.txt: | setup
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD)

# The release build: a baseline x86-64 binary plus ggml CPU variants
# (libggml-cpu-*.so) it chooses from at run time; see CMakeLists.txt.
$(PORTABLE)/CMakeCache.txt: | setup-portable
	cmake -S . -B $(PORTABLE) -DMKA_PORTABLE=ON $(CMAKE_FLAGS)

portable: setup-portable $(PORTABLE)/CMakeCache.txt
	cmake --build $(PORTABLE) -j $(JOBS)

# The whole test suite: go vet, every package's tests (including the
# portable binary's variant choice and results), the pure-Go kernels.
test: setup $(BUILD)/CMakeCache.txt portable
	MKA_PORTABLE_BIN=$(abspath $(PORTABLE))/mka-gguf cmake --build $(BUILD) --target check

# Benchmarks (mka-gguf bench): every number is a ratio against a baseline
# measured in the same run; the results also go to $(BUILD)/bench.json.
# When the portable tree is configured (make portable), both builds are made
# and the portable binary runs against the native one and against its own
# built-in baseline x86-64 code (BENCH_PORTABLE=1 forces that, 0 skips it).
# bench-go runs the go test benchmarks.
BENCH_PORTABLE ?= $(if $(wildcard $(PORTABLE)/CMakeCache.txt),1,0)

ifeq ($(BENCH_PORTABLE),1)
bench: build portable
	$(PORTABLE)/mka-gguf bench --against native=$(BUILD)/mka-gguf --against builtin=SELF --json-file $(BUILD)/bench.json
else
bench: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) --target bench
endif

bench-go: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) --target bench-go

# The main job on a model the project generates (no downloads needed).
demo: build
	$(BUILD)/mka-gguf synth --force $(BUILD)/demo.gguf
	$(BUILD)/mka-gguf merge --force $(BUILD)/demo.gguf $(BUILD)/demo-merged.gguf
	$(BUILD)/mka-gguf inspect $(BUILD)/demo-merged.gguf

# A release tarball of the portable build: bin/mka-gguf + lib/mka-gguf/*.so.
dist: portable
	rm -rf $(PORTABLE)/dist
	cmake --install $(PORTABLE) --prefix $(PORTABLE)/dist/mka-gguf
	tar -C $(PORTABLE)/dist -czf $(PORTABLE)/mka-gguf-linux-x86_64.tar.gz mka-gguf
	@echo "$(PORTABLE)/mka-gguf-linux-x86_64.tar.gz"

clean:
	rm -rf $(BUILD) $(PORTABLE)
