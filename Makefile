# cloudlet: `make up` starts a single-node cloudlet; `make test` runs the whole suite.
SHELL := /bin/bash
CARGO ?= cargo
PREFIX ?= /usr/local

# Debian packages: what the daemon needs at run time, and what the tests add.
UP_PACKAGES := nftables iproute2 busybox-static libseccomp-dev pkg-config protobuf-compiler libprotobuf-dev tini runc curl ca-certificates
TEST_PACKAGES := $(UP_PACKAGES) docker-registry skopeo jq crun etcd-server
BENCH_PACKAGES := $(TEST_PACKAGES) podman hyperfine umoci etcd-client wrk

.PHONY: up test bench lint build release deps-up deps-test deps-bench install pysdk fuzz

deps-up:
	@scripts/deps.sh $(UP_PACKAGES)
deps-test:
	@scripts/deps.sh $(TEST_PACKAGES)
deps-bench:
	@scripts/deps.sh $(BENCH_PACKAGES)

build: deps-up
	$(CARGO) build

release: deps-up
	$(CARGO) build --release

install: release
	install -m 0755 target/release/cloudlet $(PREFIX)/bin/cloudlet

## up: build, install and run the daemon in the foreground (state in /var/lib/cloudlet,
## Docker API on /run/cloudlet/docker.sock).
up: install
	scripts/up.sh

lint: deps-up
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings

## test: install what the tests need, then fmt, clippy and every test (as root: the tests
## use namespaces, cgroups and overlayfs for real).
test: deps-test pysdk lint
	$(CARGO) test --workspace --no-fail-fast
	# The kubectl acceptance suites again, on a real etcd instead of SQLite (tests/common);
	# --workspace keeps the features of the run above, so nothing is rebuilt.
	CLOUDLET_TEST_DATASTORE=etcd $(CARGO) test --workspace --test kubectl --test admission --test explain --test observability --test server_side_apply

# The Python docker and kubernetes clients, acceptance clients, in a venv of their own (PyPI).
pysdk:
	@test -x target/pysdk/bin/python || python3 -m venv target/pysdk
	@target/pysdk/bin/python -c 'import docker' 2>/dev/null || target/pysdk/bin/pip install -q docker
	@target/pysdk/bin/python -c 'import kubernetes' 2>/dev/null || target/pysdk/bin/pip install -q kubernetes

bench: deps-bench release
	bench/run.sh

## fuzz: the decoders under libFuzzer (cargo install cargo-fuzz first); FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
fuzz:
	cd fuzz && for t in $$(RUSTC_BOOTSTRAP=1 cargo fuzz list); do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done
