#!/usr/bin/env bash
# npm run test:container: builds the project's image with podman and checks the documented container path
# (the image alone, the compose stack, bad input), then removes every container, volume and network it made.
# Needs root, podman, runc, podman-compose and, to make the stand-in base images, debootstrap (Debian:
# apt-get install podman runc podman-compose debootstrap); no image registry: see standins/build.sh.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"

missing=()
for tool in podman runc podman-compose; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test:container needs ${missing[*]}: apt-get install podman runc podman-compose debootstrap" >&2
  exit 1
fi
# runc, cgroupfs and no default ulimits: what works on hosts without systemd and with hybrid cgroups.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$repo/test/container/containers.conf}"
export CONTAINER_TEST_PREFIX="wvrct-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
export CONTAINER_TEST_OUT="${CONTAINER_TEST_OUT:-$(mktemp -d "/tmp/$CONTAINER_TEST_PREFIX.XXXXXX")}"
image=watson-vr-selfhosted:local

clean_up() {
  local names
  names=$(podman ps -a --format '{{.Names}}' | grep "^$CONTAINER_TEST_PREFIX" || true)
  [ -z "$names" ] || podman rm --force --volumes --time 0 $names >/dev/null 2>&1 || true
  names=$(podman volume ls --format '{{.Name}}' | grep "^$CONTAINER_TEST_PREFIX" || true)
  [ -z "$names" ] || podman volume rm --force $names >/dev/null 2>&1 || true
  names=$(podman network ls --format '{{.Name}}' | grep "^$CONTAINER_TEST_PREFIX" || true)
  [ -z "$names" ] || podman network rm --force $names >/dev/null 2>&1 || true
}
trap clean_up EXIT

bash test/container/standins/build.sh

# This host's npm settings for reaching the npm registry, given to the build's npm ci the same way and for
# the build's steps only (mounted, not in the image): the CA of a proxy that signs TLS itself (npm's
# cafile), and Node's headers from the base image instead of a download (npm's nodedir) for a native addon
# built from source where its prebuilt binary cannot be fetched.
build_mounts=()
build_npmrc="$CONTAINER_TEST_OUT/build-npmrc"
: > "$build_npmrc"
cafile=$(npm config get cafile 2>/dev/null || true)
if [ -n "$cafile" ] && [ "$cafile" != null ] && [ "$cafile" != undefined ] && [ -f "$cafile" ]; then
  echo 'cafile=/run/host-ca.crt' >> "$build_npmrc"
  build_mounts+=(--volume "$cafile:/run/host-ca.crt:ro")
fi
nodedir=$(npm config get nodedir 2>/dev/null || true)
if [ -n "$nodedir" ] && [ "$nodedir" != null ] && [ "$nodedir" != undefined ]; then
  echo 'nodedir=/usr/local' >> "$build_npmrc"
fi
[ -s "$build_npmrc" ] && build_mounts+=(--volume "$build_npmrc:/usr/local/etc/npmrc:ro")

echo "building $image from the Dockerfile (log: $CONTAINER_TEST_OUT/build.log)"
start=$(date +%s)
# The docker format keeps the HEALTHCHECK (OCI images have none), as docker build does.
if ! podman build --format docker "${build_mounts[@]}" -t "$image" -f Dockerfile . > "$CONTAINER_TEST_OUT/build.log" 2>&1; then
  tail -30 "$CONTAINER_TEST_OUT/build.log" >&2
  exit 1
fi
seconds=$(( $(date +%s) - start ))
base=$(awk '/^FROM node:/ { print $2 }' Dockerfile | tail -1)
size=$(podman image inspect --format '{{.Size}}' "$image")
base_size=$(podman image inspect --format '{{.Size}}' "$base")
printf 'built %s in %d s: %d MB, of which %d MB are the base image %s\n' "$image" "$seconds" \
  $(( size / 1000000 )) $(( base_size / 1000000 )) "$base" | tee "$CONTAINER_TEST_OUT/image.txt"

# The checks compare start-up messages with the service outside a container, and the tutorial uses the
# README's demo zips: both from this tree, compiled.
npx tsc -p tsconfig.json
npx jest --config test/container/jest.config.ts "$@"
echo "tutorial transcript and compose logs: $CONTAINER_TEST_OUT"
