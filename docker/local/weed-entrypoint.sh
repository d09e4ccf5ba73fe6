#!/bin/sh
# The stand-in SeaweedFS image's entrypoint: runs `weed` with the command's arguments. On the host's network
# (docker/compose.local.yaml) `weed mini` must not take its default ports (8080, 8888, 9333, ... may be anyone's):
# S3_PORT sets S3's (-s3.port), and with WEED_PORT_BASE set `mini` gets every other port from there: master,
# volume, filer and admin on BASE..BASE+3 (their gRPC ports 10000 above: weed's admin worker dials admin + 10000
# whatever it is told), S3's gRPC, WebDAV and the two debug ports on BASE+4..BASE+7; Iceberg, Lance and the
# admin UI off. The healthcheck (weed-healthcheck.py) reads the same two variables.
set -eu
if [ "${1:-}" = mini ] && [ -n "${S3_PORT:-}" ]; then
  shift
  set -- mini -s3.port="$S3_PORT" "$@"
fi
if [ "${1:-}" = mini ] && [ -n "${WEED_PORT_BASE:-}" ]; then
  b=$WEED_PORT_BASE
  shift
  set -- mini \
    -master.port=$b -master.port.grpc=$((b + 10000)) \
    -volume.port=$((b + 1)) -volume.port.grpc=$((b + 10001)) \
    -filer.port=$((b + 2)) -filer.port.grpc=$((b + 10002)) \
    -admin.port=$((b + 3)) -admin.port.grpc=$((b + 10003)) \
    -s3.port.grpc=$((b + 4)) -webdav.port=$((b + 5)) -debug.port=$((b + 6)) -s3.debug.port=$((b + 7)) \
    -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false -master.telemetry=false "$@"
fi
exec weed "$@"
