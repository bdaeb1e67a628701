# The two commands a new user types: `make bench` and `make test`.
# Each installs what is missing, configures and builds under build/, then
# runs. CMAKE_FLAGS passes options through: make test CMAKE_FLAGS=-DMANYHANDS_WITH_THREADS=OFF
BUILD ?= build
BUILD_TYPE ?= Release
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps configure build test cluster-test bench stream-bench micro soak fuzz clean

all: build

deps:
	@scripts/install-deps

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# CTEST_FLAGS passes options to ctest: make test CTEST_FLAGS="-LE cluster"
CTEST_FLAGS ?=
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

# The mpi backend across simulated hosts (scripts/cluster; root only, the
# tests skip otherwise): the CTest entries labelled cluster.
cluster-test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L cluster

# The main job: the comparison matrix (every backend x kernel x workers),
# then the blog's experiment beside its Python program; CSV and plots in
# results/$(LABEL)/, the summary on stdout (harness/README.md).
# BENCH_FLAGS passes options through: BENCH_FLAGS="--repeat 5 --kernels sleep"
BENCH_FLAGS ?=
bench: build
	$(BUILD)/harness/manyhands-bench matrix --label $(LABEL) $(BENCH_FLAGS); m=$$?; \
	$(BUILD)/harness/manyhands-bench seed --label $(LABEL) $(BENCH_FLAGS); s=$$?; \
	[ $$m -eq 0 ] && [ $$s -eq 0 ]

# Streams against maps (issue #14; harness/README.md, "The stream
# experiment"): the seed's workload, an empty function, one-item jobs,
# sleep at 64 workers and 10^8 ints for peak RSS, through mh_stream and
# mh_map on every backend; results/$(LABEL)/<date>-stream.csv and
# -summary.txt. Not in `make bench`: it takes minutes here.
stream-bench: build
	$(BUILD)/harness/manyhands-bench stream --label $(LABEL) $(BENCH_FLAGS)

# What the library itself costs (Google Benchmark): every figure in
# docs/results.md "Library overhead", as JSON in results/$(LABEL)/micro.json.
# MICRO_FLAGS passes flags through: MICRO_FLAGS=--benchmark_filter=threads
LABEL ?= $(shell hostname)
MICRO_FLAGS ?=
micro: configure
	cmake --build $(BUILD) -j $(JOBS) --target micro
	mkdir -p results/$(LABEL)
	$(BUILD)/harness/micro/micro --benchmark_out=results/$(LABEL)/micro.json \
	  --benchmark_out_format=json $(MICRO_FLAGS)
	@if command -v python3 >/dev/null; then \
	  python3 harness/micro/summarize.py results/$(LABEL)/micro.json; fi

# Reliability (docs/reliability.md). soak: SOAK_MAPS random maps over
# every built backend (mpi aside), each compared with seq; counts, RSS
# and heap must stay flat. fuzz: every libFuzzer target in tests/fuzz for
# FUZZ_SECONDS each, built with clang, ASan and UBSan in $(FUZZ_BUILD).
SOAK_MAPS ?= 10000
SOAK_SEED ?= $(shell date +%s)
soak: build
	$(BUILD)/tests/soak $(SOAK_MAPS) $(SOAK_SEED) all

FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMANYHANDS_BUILD_EXAMPLES=OFF \
	  -DMANYHANDS_FUZZ=ON -DMANYHANDS_SANITIZE=address,undefined \
	  -DMANYHANDS_FUZZ_SECONDS=$(FUZZ_SECONDS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers
	cd $(FUZZ_BUILD) && { ctest -L fuzz -j $(JOBS) -V > fuzz.log 2>&1; rc=$$?; \
	  grep -E "Done [0-9]+ runs|Test +#|ERROR|SUMMARY" fuzz.log; \
	  awk '/stat::number_of_executed_units/ {s += $$NF} END {print "fuzz executions:", s+0}' fuzz.log; \
	  exit $$rc; }

clean:
	rm -rf $(BUILD)
