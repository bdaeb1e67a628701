# The two commands a new user types: `make bench` and `make test`.
# Each installs what is missing, configures and builds under build/, then
# runs. CMAKE_FLAGS passes options through: make test CMAKE_FLAGS=-DMANYHANDS_WITH_THREADS=OFF
BUILD ?= build
BUILD_TYPE ?= Release
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps configure build test bench clean

all: build

deps:
	@scripts/install-deps

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The main job: the blog's experiment on every backend this build has.
bench: build
	$(BUILD)/examples/seed 1000000 4

clean:
	rm -rf $(BUILD)
