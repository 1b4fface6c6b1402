# The GCE metadata stand-in for kind clusters: `meshmig metadata-server` answers the frontend's
# cluster-name and zone look-ups. Build from the project root:
#   docker build -t meshmig-metadata:dev -f kind-configs/metadata.Dockerfile .
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p meshmig --locked

FROM debian:bookworm-slim
COPY --from=build /src/target/release/meshmig /usr/local/bin/meshmig
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/meshmig"]
CMD ["metadata-server", "--help"]
