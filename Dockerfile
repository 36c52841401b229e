# The operator's image: the three binaries, statically linked against musl,
# on a distroless static base, running as a non-root user by default (the
# agent's DaemonSet sets runAsUser: 0 for the host socket; see deploy/).
#
#   docker build -t bottlerocket-update-operator:0.1.0 .
#
# Stage 1: build.
FROM docker.io/library/rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --profile dist --locked --target x86_64-unknown-linux-musl -p leader -p authproxy -p nodeagent \
 && mkdir /out \
 && cp target/x86_64-unknown-linux-musl/dist/leader target/x86_64-unknown-linux-musl/dist/authproxy target/x86_64-unknown-linux-musl/dist/nodeagent /out/

# Stage 2: run.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/leader /out/authproxy /out/nodeagent /
USER 65532:65532
ENTRYPOINT ["/leader"]
