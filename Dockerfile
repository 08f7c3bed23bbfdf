# synthscan: the HTTP API (`synthscan serve`) and batch scans (`synthscan predict --shard`).
#
#   docker build -t synthscan .
#   docker run --rm -p 8080:8080 synthscan                      # serve on :8080
#   docker run --rm -v /photos:/data:ro synthscan predict --json /data
#
# Stage 1 builds the release binary (the default model is compiled into it); stage 2 is a
# slim Debian with only that binary, run as an unprivileged user. CPU backend (flex).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so that editing src/ does not rebuild them: a stub crate with the real
# manifest and lock file.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/.fingerprint/synthscan-* target/release/deps/synthscan-* \
              target/release/deps/libsynthscan-*
COPY src ./src
COPY models ./models
COPY assets ./assets
RUN cargo build --release --locked && strip target/release/synthscan \
    && ./target/release/synthscan info > /dev/null

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home synthscan
COPY --from=build /src/target/release/synthscan /usr/local/bin/synthscan
USER 10001
EXPOSE 8080
ENV SYNTHSCAN_LOG=warn,synthscan::serve=info
ENTRYPOINT ["/usr/local/bin/synthscan"]
CMD ["serve", "--addr", "0.0.0.0:8080"]
