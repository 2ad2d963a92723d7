# syntax=docker/dockerfile:1
# Multi-stage build: a static binary on a distroless base, run as non-root.
# Works with a read-only root filesystem: all state goes to /data (mount a
# volume there, or point MEDIANEST_NATS_URL and MEDIANEST_DATABASE_URL away).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/medianest-hub ./cmd/medianest-hub \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/medianest-hub /usr/local/bin/medianest-hub
COPY --from=build --chown=nonroot:nonroot /out/data /data
USER nonroot:nonroot
ENV MEDIANEST_DATA_DIR=/data \
    MEDIANEST_LISTEN_ADDR=:8080
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/medianest-hub"]
CMD ["serve"]
