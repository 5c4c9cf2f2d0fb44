# frontgate's image: a release build on Debian 12, run on debian:12-slim with only the libraries
# the binary links, as uid 65532 with nothing else to run.
#   docker build -t frontgate:0.1.0 .
#   docker run --rm -v "$PWD/conf:/etc/frontgate:ro" -p 8443:8443 frontgate:0.1.0
# tests/image-root builds the same runtime root with debootstrap (no Docker engine needed) from
# the RUNTIME_PACKAGES line below and runs the binary in it; charts/frontgate deploys the image.

FROM debian:12 AS build
WORKDIR /src
# The build packages are .ci/install-deps build's list, the one the Makefile installs.
COPY .ci/install-deps .ci/install-deps
RUN .ci/install-deps build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN meson setup build-image --buildtype=release && ninja -C build-image frontgate && \
    build-image/frontgate --version

FROM debian:12-slim
# The runtime libraries: `ldd frontgate` mapped to Debian packages with `dpkg -S` (libc6 is in
# every Debian image), and ca-certificates for shards and issuers verified by the system roots.
# tests/image-root installs exactly this list: keep it on one line.
ARG RUNTIME_PACKAGES="ca-certificates libevent-2.1-7 libevent-core-2.1-7 libevent-openssl-2.1-7 libevent-pthreads-2.1-7 libssl3 libjansson4 libyaml-0-2 libhttp-parser2.9 libnghttp2-14"
RUN apt-get update && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $RUNTIME_PACKAGES && \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log && \
    echo 'frontgate:x:65532:65532:frontgate:/nonexistent:/usr/sbin/nologin' >>/etc/passwd && \
    echo 'frontgate:x:65532:' >>/etc/group && \
    mkdir -p /etc/frontgate
COPY --from=build /src/build-image/frontgate /usr/local/bin/frontgate
# numeric, so that runAsNonRoot can verify it
USER 65532:65532
WORKDIR /etc/frontgate
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/frontgate"]
CMD ["run", "-c", "/etc/frontgate/frontgate.yaml"]
