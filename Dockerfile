# Builds the release binary, then runs it on a slim Debian with only CA certificates added.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hookrelay /usr/local/bin/hookrelay
ENV HOOKRELAY_LISTEN=0.0.0.0:8080
EXPOSE 8080
USER nobody
ENTRYPOINT ["hookrelay"]
CMD ["serve"]
