# Static upswatch binary on a minimal base (used by docker-compose.yml).
#
# A plain `docker run -p 8080:8080 -p 1883:1883 IMAGE` runs the embedded
# stack (NATS, MQTT broker, SQLite) with its state in the volume
# /var/lib/upswatch, as the image's non-root user (65532). The configs are
# under /etc/upswatch; every setting can be changed with UPSWATCH_*
# variables (`upswatch config keys` lists them).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /upswatch ./cmd/upswatch
# The data dir, mode 0700. Copied below as a new directory under /var/lib
# with --chown, so the runtime user owns it; a named volume mounted there
# starts as a copy of it, owner included, so the daemon can write.
RUN mkdir -p /out/var/lib/upswatch && chmod 0700 /out/var/lib/upswatch

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /upswatch /usr/local/bin/upswatch
COPY configs /etc/upswatch
COPY --from=build --chown=65532:65532 /out/var/lib/ /var/lib/
ENV UPSWATCH_DATA_DIR=/var/lib/upswatch \
    UPSWATCH_RULES_FILE=/etc/upswatch/rules.yaml \
    UPSWATCH_PRODUCTS_FILE=/etc/upswatch/products.yaml \
    UPSWATCH_HTTP_ADDR=0.0.0.0:8080 \
    UPSWATCH_MQTT_LISTEN=0.0.0.0:1883
USER 65532:65532
WORKDIR /var/lib/upswatch
VOLUME /var/lib/upswatch
EXPOSE 8080 1883
ENTRYPOINT ["upswatch"]
CMD ["serve"]
