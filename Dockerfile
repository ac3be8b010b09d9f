# idlinkd: build with the project's Rust toolchain, run as non-root from a minimal image that
# holds only the binaries and CA certificates: idlinkd, and the idlink CLI (the chart's
# `helm test` pod runs `/idlink health`; operators can `kubectl run` it too).
#   docker build -t idlinkd .
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin idlinkd --bin idlink

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/idlinkd /idlinkd
COPY --from=builder /src/target/release/idlink /idlink
USER nonroot:nonroot
EXPOSE 50051
ENTRYPOINT ["/idlinkd"]
CMD ["--config", "/etc/idlink/idlink.toml"]
