# idlinkd: build with the project's Rust toolchain, run as non-root from a minimal image that
# holds only the binary and CA certificates.
#   docker build -t idlinkd .
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin idlinkd

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/idlinkd /idlinkd
USER nonroot:nonroot
EXPOSE 50051
ENTRYPOINT ["/idlinkd"]
CMD ["--config", "/etc/idlink/idlink.toml"]
