#!/usr/bin/env bash
# Build the CPU image's steps for real without a Docker engine, then run `voxbatch run` on the baked-in sample
# inside the built image. Needs root, Debian's buildah and debootstrap, and PyPI.
#
#   sudo docker/buildah-check.sh            # from the repository root
#   sudo TARGET=cpu-zh docker/buildah-check.sh   # the Mandarin image: runs the Chinese sample with zh-baker
#   sudo TARGET=cuda docker/buildah-check.sh     # the CUDA image: built, then doctor says whether a GPU is visible
#
# What differs from `docker build --target cpu`, and why:
#   - The base is Debian bookworm's own Python (3.11) from debootstrap, not python:3.12-slim: no image registry is
#     reachable here. The Dockerfile's steps are unchanged (PYTHON_IMAGE is a build argument).
#   - When download.pytorch.org does not resolve, torch's pinned CPU build comes from a wheel folder of this
#     machine's pip configuration (mounted into the build), or else PyPI's CUDA build (about 4 GB more) stands in.
#   - The host's CA bundle goes into the base (and PIP_CERT points at it), for machines that reach PyPI through a
#     TLS-inspecting proxy.
# Everything lives under $WORK (default /var/tmp/voxbatch-buildah); `docker/buildah-check.sh --clean` removes it.
# `--background DIR` starts the check and returns at once, where it can run (root, buildah, debootstrap): its
# output goes to DIR/output and its exit code to DIR/exit-code when it ends (`make test` starts it so, beside the
# install, and tests/test_container_build.py reads it there). `--build-only` stops after the build (TAG made;
# docker/local-images.sh builds the voxbatch image of the local compose stack so). One check or build at a time
# per WORK: each waits for the lock ($WORK/lock) that the others hold.
set -euo pipefail

WORK=${WORK:-/var/tmp/voxbatch-buildah}
TARGET=${TARGET:-cpu}
TAG=${TAG:-localhost/voxbatch:check-$TARGET}
BASE=localhost/voxbatch-base:bookworm
TORCH_INDEX=${TORCH_INDEX:-}
STORE=(--root "$WORK/storage" --runroot "$WORK/run" --storage-driver "${STORAGE_DRIVER:-overlay}")

log() { printf '[buildah-check %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
trap 'echo "buildah-check: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

if [[ ${1:-} == --background ]]; then
  dir=${2:?--background DIR}
  # A check an earlier `make test` left running (interrupted) would write into the new folder: end it first.
  [[ -f $dir/pid ]] && kill -- "-$(cat "$dir/pid")" 2>/dev/null && sleep 1
  rm -rf "$dir"
  if [[ $(id -u) == 0 ]] && command -v buildah >/dev/null && command -v debootstrap >/dev/null; then
    mkdir -p "$dir"
    setsid bash -c '"$1" >"$2/output" 2>&1; echo $? >"$2/exit-code"' _ "$0" "$dir" </dev/null &
    echo $! >"$dir/pid"
    log "image check started in the background: $dir"
  fi
  exit 0
fi

if [[ ${1:-} == --clean ]]; then
  buildah "${STORE[@]}" rm --all >/dev/null 2>&1 || true
  buildah "${STORE[@]}" rmi --all --force >/dev/null 2>&1 || true
  # containers/storage keeps its overlay folder bind-mounted over itself; a killed check can leave more mounts
  findmnt -rn -o TARGET | grep "^$WORK/" | sort -r | xargs -r umount -l 2>/dev/null || true
  rm -rf "$WORK"
  exit 0
fi

build_only=
[[ ${1:-} == --build-only ]] && build_only=1

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "buildah-check: $tool is missing (apt-get install $tool)" >&2; exit 2; }
done
[[ -f docker/Dockerfile ]] || { echo "buildah-check: run from the repository root" >&2; exit 2; }
mkdir -p "$WORK"
# Another check or build on this store (a `make test` beside a developer's, docker/local-images.sh): wait for it.
exec 9>"$WORK/lock"
flock 9
# Working containers of an earlier check that was killed hold their layers: drop them.
buildah "${STORE[@]}" rm --all >/dev/null 2>&1 || true

# 1. A base image: Debian's minimal root filesystem with Python, made once.
if ! buildah "${STORE[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
  if [[ ! -x $WORK/rootfs/usr/bin/python3 ]]; then
    log "debootstrap bookworm (minbase + python3)"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
      bookworm "$WORK/rootfs" >"$WORK/debootstrap.log" 2>&1 \
      || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
  fi
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
  fi
  log "importing the base image"
  ctr=$(buildah "${STORE[@]}" from scratch)
  buildah "${STORE[@]}" copy "$ctr" "$WORK/rootfs" / >/dev/null
  buildah "${STORE[@]}" config --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    --env LANG=C.UTF-8 --cmd /usr/bin/python3 "$ctr"
  buildah "${STORE[@]}" commit --rm "$ctr" "$BASE" >/dev/null
fi

# 2. The Dockerfile's target, as written, on that base.
torch_pin=$(sed -n 's/^torch==//p' constraints.txt)
torch_args=()
if [[ $TARGET == cuda ]]; then
  : # torch's CUDA build from PyPI, as the Dockerfile says
elif [[ -z $TORCH_INDEX ]]; then
  if getent hosts download.pytorch.org >/dev/null; then
    TORCH_INDEX=https://download.pytorch.org/whl/cpu
  else
    # The pinned CPU build where pip finds it without an index (a wheel folder of this machine's pip config),
    # for the base's Python (3.11); else PyPI's CUDA build stands in for it.
    rm -rf "$WORK/wheels" && mkdir -p "$WORK/wheels"
    PIP_NO_INDEX=1 python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 --dest "$WORK/wheels" "torch==$torch_pin" >/dev/null 2>&1 || true
    wheel=$(find "$WORK/wheels" -name "torch-$torch_pin+cpu-*.whl" -printf '%f\n' | head -n 1)
    TORCH_INDEX=https://pypi.org/simple
    if [[ -n $wheel ]]; then
      log "download.pytorch.org is not reachable: torch's CPU build from this machine's $wheel"
      torch_args+=(--volume "$WORK/wheels:/wheels:ro" --build-arg "TORCH_PACKAGES=/wheels/$wheel")
    else
      log "download.pytorch.org is not reachable: torch's CUDA build from PyPI stands in for the CPU build"
      torch_args+=(--build-arg "TORCH_PACKAGES=torch==$torch_pin")
    fi
  fi
fi
[[ -n $TORCH_INDEX ]] && torch_args+=(--build-arg "TORCH_INDEX=$TORCH_INDEX")
log "buildah build --target $TARGET"
buildah "${STORE[@]}" build --isolation chroot --format docker --layers \
  --build-arg "PYTHON_IMAGE=$BASE" "${torch_args[@]}" \
  -f docker/Dockerfile --target "$TARGET" -t "$TAG" . >"$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log" >&2; exit 1; }
buildah "${STORE[@]}" images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$TAG" >&2
# Layers of earlier builds that no tagged image uses any more: without this the store grows by gigabytes a build.
buildah "${STORE[@]}" rmi --prune >/dev/null 2>&1 || true
[[ -n $build_only ]] && exit 0

# 3. voxbatch inside the image, as its own non-root user: doctor, then the sample run, then a rerun.
ctr=$(buildah "${STORE[@]}" from "$TAG")
trap 'buildah "${STORE[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
in_image() { buildah "${STORE[@]}" run --isolation chroot --user 10001:10001 "$ctr" -- "$@"; }
if [[ $TARGET == cuda ]]; then
  # No GPU here: doctor must say so plainly (and fail), the CPU checks pass.
  log "voxbatch doctor --device cuda (no GPU on this machine)"
  if in_image voxbatch doctor --out /data --device cuda; then
    echo "buildah-check: doctor --device cuda passed on a machine without a GPU" >&2; exit 1
  fi
  in_image python -c 'import torch; print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}")'
  log "done"
  exit 0
fi
sample=en voice=()
[[ $TARGET == cpu-zh ]] && sample=zh voice=(--voice zh-baker)
log "voxbatch doctor"
in_image voxbatch doctor --out /data "${voice[@]}"
log "voxbatch run on the baked-in sample ($sample)"
in_image voxbatch run "/opt/voxbatch-data/sample/$sample" --out /data/out "${voice[@]}"
log "rerun (nothing to synthesize)"
in_image voxbatch run "/opt/voxbatch-data/sample/$sample" --out /data/out "${voice[@]}"
in_image python -c '
import glob, pyarrow.parquet as pq
rows = pq.read_table(glob.glob("/data/out/runs/*/manifest.parquet")[0]).to_pylist()
ok = [r for r in rows if r["status"] == "ok"]
seconds = sum(r["duration_s"] for r in ok)
print(f"run manifest: {len(rows)} rows, {len(ok)} ok, {seconds:.1f} s of audio")
assert rows and len(ok) == len(rows) and seconds > len(rows), rows
'
log "done"
