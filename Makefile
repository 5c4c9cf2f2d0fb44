# frontgate's front door. Every target installs what is missing first (Debian 12).
#   make demo    build and run `frontgate demo`
#   make test    build (normal and ASan+UBSan) and run every test
#   make bench   run the side-by-side benchmark against nginx and HAProxy
#   make bench-jwt   JWT verification and token-cache speed against OpenSSL's own
.PHONY: all build demo test test-quick bench bench-jwt check-format format clean

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
