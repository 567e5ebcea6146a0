# Thin wrapper around CMake (the build entry point, see CMakeLists.txt).
BUILD ?= build
CMAKE_FLAGS ?=

.PHONY: all build test bench demo clean

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD)

# The whole test suite: go vet, every package's tests, the pure-Go kernels.
test: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) --target check

bench: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) --target bench

# The main job on a model the project generates (no downloads needed).
demo: build
	$(BUILD)/mka-gguf synth --force $(BUILD)/demo.gguf
	$(BUILD)/mka-gguf merge --force $(BUILD)/demo.gguf $(BUILD)/demo-merged.gguf
	$(BUILD)/mka-gguf inspect $(BUILD)/demo-merged.gguf

clean:
	rm -rf $(BUILD)
