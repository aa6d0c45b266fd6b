# Builds the release binary, then runs it on a slim Debian with only CA certificates added.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown nobody /data
COPY --from=build /src/target/release/hookrelay /usr/local/bin/hookrelay
# Without DATABASE_URL the SQLite file lands in /data, the one directory `nobody` may write.
WORKDIR /data
ENV HOOKRELAY_LISTEN=0.0.0.0:8080
# A container's log stream is no place for a key: create one with `hookrelay admin key create`.
ENV HOOKRELAY_BOOTSTRAP=false
EXPOSE 8080
USER nobody
ENTRYPOINT ["hookrelay"]
CMD ["serve"]
