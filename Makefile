# frontgate's front door. Every target installs what is missing first (Debian 12).
#   make demo    build and run `frontgate demo`
#   make test    build (normal and ASan+UBSan) and run every test
#   make bench   run the side-by-side benchmark against nginx and HAProxy
#   make bench-jwt   JWT verification and token-cache speed against OpenSSL's own
#   make soak    SOAK_SECONDS (600) of mixed traffic and reloads; RSS and fds must stay flat
.PHONY: all build demo test test-quick bench bench-jwt fuzz check-format format clean

all: build

build:
	@.ci/install-deps build
	@[ -f build/build.ninja ] || meson setup build >/dev/null
	@ninja -C build

demo: build
	./build/frontgate demo

test:
	@.ci/install-deps test
	@tests/run

test-quick:
	@.ci/install-deps test
	@tests/run --quick

bench:
	@.ci/install-deps bench
	@tests/bench/run

bench-jwt:
	@.ci/install-deps build
	@tests/bench/jwt/run

format:
	clang-format -i gateway/*.[ch] auth/*.[ch] config/*.[ch] tests/unit/*.[ch]

check-format:
	clang-format --dry-run --Werror gateway/*.[ch] auth/*.[ch] config/*.[ch]

clean:
	rm -rf build build-asan

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
