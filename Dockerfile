# fc-init as the entrypoint of a function image.
#
#   docker build -t fc-init-example .
#   docker run --rm -p 9000:9000 fc-init-example
#   curl -X POST -d '{"name": "Ada"}' http://127.0.0.1:9000/invoke
#
# fc-init is linked statically (.cargo/config.toml says why), so for your own image copy
# /usr/local/bin/fc-init from the build stage into any base image (Alpine, distroless,
# scratch) and set your function's command (or a config file at /etc/fc-init/fc-init.toml).
#
# Cargo features to build with: FEATURES=redis-tls for Redis over TLS (rediss://), e.g.
#   docker build --build-arg FEATURES=redis-tls -t fc-init-example .
# It makes the binary larger, and its server certificates are checked against the system's
# roots (installed below with it), unless the URL gives a CA file (?ca=).
ARG FEATURES=

FROM rust:1-slim-bookworm AS build
ARG FEATURES
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY src ./src
# Static and non-PIE, for the build machine's own target; the flags go with an explicit
# --target so that build scripts and proc-macros are built without them.
RUN target=$(rustc -vV | sed -n 's/^host: //p') \
 && RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release --locked --target "$target" --features "$FEATURES" \
 && cp "target/$target/release/fc-init" /usr/local/bin/fc-init

FROM debian:bookworm-slim
ARG FEATURES
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
    $(case "$FEATURES" in *tls*) echo ca-certificates ;; esac) \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/fc-init /usr/local/bin/fc-init
COPY examples/python /opt/function
COPY config/fc-init.toml /usr/share/doc/fc-init/fc-init.toml
WORKDIR /opt/function
ENTRYPOINT ["fc-init"]
CMD ["-c", "/opt/function/fc-init.toml", "--listen", "0.0.0.0:9000", "--", "python3", "/opt/function/function.py"]
