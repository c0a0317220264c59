# pgstream: a static binary on a minimal base image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/pgstream ./cmd/pgstream

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pgstream /usr/local/bin/pgstream
# The checkpoint (and a file sink, if configured) live here: mount a volume to keep them.
VOLUME ["/var/lib/pgstream"]
USER nonroot
ENTRYPOINT ["/usr/local/bin/pgstream"]
CMD ["run", "--config", "/etc/pgstream/pgstream.yaml"]
