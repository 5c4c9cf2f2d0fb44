# frontgate's targets. Every target installs what is missing first (Debian 12); on a machine
# without make, `./dev TARGET` installs make and then runs the target.
#   make demo    build and run `frontgate demo` (ARGS="--listen 127.0.0.1:18080 --tls-listen ...")
#   make install build and install frontgate into $(PREFIX)/bin (PREFIX=/usr/local)
#   make test    build (normal, ASan+UBSan, TSan) and run every test
#   make bench   run the side-by-side benchmark against nginx and HAProxy, and the index live
#                from kcp against tests/bench/kcpfake (needs go; BENCH_ONLY=k for that alone)
#   make bench-jwt   JWT verification and token-cache speed against OpenSSL's own, and minting
#                against libjwt
#   make soak    SOAK_SECONDS (600) of mixed traffic and reloads; RSS and fds must stay flat
#   make test-interop   frontgate in front of real peers: kube-apiserver + etcd, the Iceberg REST
#                catalog with PyIceberg and DuckDB, Keycloak, kcp, h2spec (INTEROP="kube iceberg"
#                for some)
.PHONY: all build demo install uninstall test test-quick test-interop bench bench-jwt bench-metrics fuzz check-format format clean

PREFIX ?= /usr/local
ARGS ?=

all: build

# meson's setup output is shown only when it fails
build:
	@.ci/install-deps build
	@[ -f build/build.ninja ] || meson setup build --prefix "$(PREFIX)" >build-setup.log 2>&1 || \
	  { cat build-setup.log; rm -rf build; echo "make: meson setup failed (above)" >&2; exit 1; }
	@ninja -C build

demo: build
	@.ci/install-deps demo
	./build/frontgate demo $(ARGS)

install: build
	DESTDIR="$(DESTDIR)" meson install -C build --no-rebuild --quiet
	@echo "installed $(DESTDIR)$(PREFIX)/bin/frontgate"

uninstall:
	rm -f "$(DESTDIR)$(PREFIX)/bin/frontgate"

test:
	@.ci/install-deps test
	@tests/run

test-quick:
	@.ci/install-deps test
	@tests/run --quick

INTEROP ?=
test-interop: build
	@.ci/install-deps interop
	@tests/interop/run $(INTEROP)

bench:
	@.ci/install-deps bench
	@tests/bench/run
	@tests/bench/metrics-cost

bench-metrics:
	@.ci/install-deps bench
	@tests/bench/metrics-cost

bench-jwt:
	@.ci/install-deps bench-jwt
	@tests/bench/jwt/run

format:
	clang-format -i gateway/*.[ch] auth/*.[ch] config/*.[ch] tests/unit/*.[ch]

check-format:
	clang-format --dry-run --Werror gateway/*.[ch] auth/*.[ch] config/*.[ch]

clean:
	rm -rf build build-asan build-tsan build-fuzz build-setup.log

# libFuzzer targets (clang): FUZZ_SECONDS per target, seeded from tests/fuzz/corpus/<t>, what
# they find kept in build-fuzz/corpus/<t>. The targets are tests/fuzz/targets (FUZZ_TARGETS="jwks
# head" runs a few); tests/fuzz/ci runs them and prints one line each
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz:
	@.ci/install-deps test
	@[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true -Db_lundef=false >/dev/null
	@ninja -C build-fuzz
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_BUILD=build-fuzz tests/fuzz/ci $(FUZZ_TARGETS)

# SOAK_SECONDS (600) of mixed traffic with a SIGHUP every 10 s; RSS and fds must stay flat
.PHONY: soak
soak: build
	@.ci/install-deps test
	@FRONTGATE_BIN=$(CURDIR)/build/frontgate tests/soak/run
