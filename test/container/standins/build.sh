#!/usr/bin/env bash
# Builds, when missing, local stand-ins for the base images the Dockerfile and compose.yaml name (node, redis,
# postgres, caddy), for hosts that reach no image registry: a Debian bookworm root made with debootstrap from
# Debian's mirror, plus this host's Node 20 or Debian's packages. An image of that name already present (a
# real one, or a stand-in built before) is kept.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
root_image=localhost/watson-vr-standin/bookworm-root
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# The names the project uses, read from its files, so the stand-ins follow them.
node_image=$(awk '/^FROM node:/ { print $2; exit }' "$repo/Dockerfile")
redis_image=$(awk '$1 == "image:" && $2 ~ /^redis:/ { print $2; exit }' "$repo/compose.yaml")
postgres_image=$(awk '$1 == "image:" && $2 ~ /^postgres:/ { print $2; exit }' "$repo/compose.yaml")
caddy_image=$(awk '$1 == "image:" && $2 ~ /^caddy:/ { print $2; exit }' "$repo/compose.yaml")
for name in node_image redis_image postgres_image caddy_image; do
  [ -n "${!name}" ] || { echo "test:container: cannot find ${name%_image}'s image in Dockerfile/compose.yaml" >&2; exit 1; }
done

has_image() { podman image exists "$1" || podman image exists "docker.io/library/$1"; }

build_root() {
  has_image "$root_image" && return
  command -v debootstrap >/dev/null || { echo 'test:container needs debootstrap (apt-get install debootstrap)' >&2; exit 1; }
  local dir
  dir=$(mktemp -d /var/tmp/watson-vr-standin-root.XXXXXX)
  trap 'rm -rf "$dir"' RETURN
  echo "stand-ins: debootstrap of Debian bookworm from $mirror (a few minutes)"
  debootstrap --variant=minbase bookworm "$dir/rootfs" "$mirror" > "$dir/debootstrap.log" 2>&1 \
    || { tail -20 "$dir/debootstrap.log" >&2; exit 1; }
  # As Debian's container images: its updates and security updates, no service starts at package install,
  # no documentation or translations.
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s-security bookworm-security main\n' "$mirror" "$mirror" "$mirror" \
    > "$dir/rootfs/etc/apt/sources.list"
  printf '#!/bin/sh\nexit 101\n' > "$dir/rootfs/usr/sbin/policy-rc.d"
  chmod +x "$dir/rootfs/usr/sbin/policy-rc.d"
  cat > "$dir/rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
  find "$dir/rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$dir/rootfs/usr/share/man/"* "$dir/rootfs/usr/share/info/"* "$dir/rootfs/usr/share/locale/"*
  rm -rf "$dir/rootfs/var/cache/apt/"*.bin "$dir/rootfs/var/cache/apt/archives/"*.deb "$dir/rootfs/var/lib/apt/lists/"*
  tar -C "$dir/rootfs" -c . | podman import --quiet --change 'CMD ["bash"]' - "$root_image" >/dev/null
}

build_standin() { # <image name> <Containerfile> <context dir>
  local tag="docker.io/library/$1" log
  log=$(mktemp /var/tmp/watson-vr-standin-build.XXXXXX)
  podman build --label org.opencontainers.image.description="stand-in for $1, built by test/container from Debian packages" \
    -t "$tag" -f "$2" "$3" > "$log" 2>&1 || { tail -30 "$log" >&2; rm -f "$log"; exit 1; }
  rm -f "$log"
  echo "stand-ins: built $tag"
}

missing=()
for image in "$node_image" "$redis_image" "$postgres_image" "$caddy_image"; do has_image "$image" || missing+=("$image"); done
[ ${#missing[@]} -eq 0 ] && exit 0
build_root

if ! has_image "$node_image"; then
  node_bin=$(command -v node)
  version=$("$node_bin" --version)
  want=$(echo "$node_image" | sed -E 's/^node:([0-9]+).*/\1/')
  [[ $version == v$want.* ]] || { echo "test:container: the node stand-in takes this host's node, which is $version, not $want" >&2; exit 1; }
  ctx=$(mktemp -d /var/tmp/watson-vr-standin-node.XXXXXX)
  cp "$node_bin" "$ctx/node"
  cp -r "$(npm root -g)/npm" "$ctx/npm"
  headers="$(dirname "$(dirname "$node_bin")")/include/node"
  [ -f "$headers/node.h" ] || { echo "test:container: no Node headers in $headers for the node stand-in" >&2; exit 1; }
  cp -r "$headers" "$ctx/include"
  build_standin "$node_image" "$here/node.Containerfile" "$ctx"
  rm -rf "$ctx"
fi
has_image "$redis_image" || build_standin "$redis_image" "$here/redis.Containerfile" "$here"
has_image "$postgres_image" || build_standin "$postgres_image" "$here/postgres.Containerfile" "$here"
has_image "$caddy_image" || build_standin "$caddy_image" "$here/caddy.Containerfile" "$here"
