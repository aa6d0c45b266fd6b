# Builds the release binary, then runs it on a slim Debian with only CA certificates added.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, against stub sources, so a change to the code alone rebuilds only the
# crate itself: this layer stays cached until Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin/hookrelay-bench \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > src/bin/hookrelay-bench/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY . .
# The stubs' build outputs are newer than the real sources' checkout times: touch them.
RUN touch src/main.rs src/lib.rs src/bin/hookrelay-bench/main.rs \
    && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown nobody /data
COPY --from=build /src/target/release/hookrelay /usr/local/bin/hookrelay
# Without DATABASE_URL the SQLite file lands in /data, the one directory `nobody` may write;
# as a volume it outlives the container.
WORKDIR /data
VOLUME /data
ENV HOOKRELAY_LISTEN=0.0.0.0:8080
# A container's log stream is no place for a key: create one with `hookrelay admin key create`.
ENV HOOKRELAY_BOOTSTRAP=false
EXPOSE 8080
# Ready means the database answers. The image has no curl; bash's /dev/tcp asks /readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
USER nobody
ENTRYPOINT ["hookrelay"]
CMD ["serve"]
