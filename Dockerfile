# Used by compose.yaml. Builds the `cairn` binary and runs it on a slim image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p gateway && cp target/release/cairn /cairn

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /cairn /usr/local/bin/cairn
EXPOSE 3000
ENTRYPOINT ["cairn"]
CMD ["serve"]
