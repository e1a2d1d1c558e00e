#!/bin/sh
# What the official redis image's entrypoint does that compose.yaml relies on: runs as the redis user, and
# without protected mode (a container's port is reached only through the container network or a publish).
set -e
if [ "${1#-}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then
  set -- "$@" --protected-mode no
  if [ "$(id -u)" = 0 ]; then
    chown -R redis:redis .
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
  fi
fi
exec "$@"
