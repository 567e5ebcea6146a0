# Thin wrapper around CMake (the build entry point, see CMakeLists.txt).
BUILD ?= build
PORTABLE ?= build-portable
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all build portable test bench demo dist clean

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD)

# The release build: a baseline x86-64 binary plus ggml CPU variants
# (libggml-cpu-*.so) it chooses from at run time; see CMakeLists.txt.
$(PORTABLE)/CMakeCache.txt:
	cmake -S . -B $(PORTABLE) -DMKA_PORTABLE=ON $(CMAKE_FLAGS)

portable: $(PORTABLE)/CMakeCache.txt
	cmake --build $(PORTABLE) -j $(JOBS)

# The whole test suite: go vet, every package's tests (including the
# portable binary's variant choice and results), the pure-Go kernels.
test: $(BUILD)/CMakeCache.txt portable
	MKA_PORTABLE_BIN=$(abspath $(PORTABLE))/mka-gguf cmake --build $(BUILD) --target check

bench: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) --target bench

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
