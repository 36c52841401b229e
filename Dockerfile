# The operator's image: the three binaries, statically linked against musl,
# on a distroless static base, running as a non-root user by default (the
# agent's DaemonSet sets runAsUser: 0 for the host socket; see deploy/).
#
# One architecture, the builder's own:
#   docker build -t bottlerocket-update-operator:0.1.0 .
# Both architectures Bottlerocket ships (x86_64 and aarch64), as one
# multi-arch image (each stage runs on, and builds for, its platform):
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     -t REGISTRY/bottlerocket-update-operator:0.1.0 --push .
#
# Stage 1: build, for the platform given (TARGETARCH is set by BuildKit).
FROM docker.io/library/rust:1.95-bookworm AS build
ARG TARGETARCH=amd64
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH (amd64 or arm64)" >&2; exit 1 ;; \
    esac > /rust-target \
 && rustup target add "$(cat /rust-target)" \
 && apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN T="$(cat /rust-target)" \
 && cargo build --profile dist --locked --target "$T" -p leader -p authproxy -p nodeagent \
 && mkdir /out \
 && cp "target/$T/dist/leader" "target/$T/dist/authproxy" "target/$T/dist/nodeagent" /out/

# Stage 2: run.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/leader /out/authproxy /out/nodeagent /
USER 65532:65532
ENTRYPOINT ["/leader"]
