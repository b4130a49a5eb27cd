# Static upswatch binary on a minimal base (used by docker-compose.yml).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /upswatch ./cmd/upswatch

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /upswatch /usr/local/bin/upswatch
COPY configs /etc/upswatch
ENTRYPOINT ["upswatch"]
CMD ["serve"]
