#!/bin/sh
# As the official image: arguments starting with "-" are options of
# redis-server, and protected mode is off (the server is reached over the
# container network, never published without a password of your own).
set -e
[ "${1#-}" != "$1" ] && set -- redis-server "$@"
[ "$1" = redis-server ] && set -- "$@" --protected-mode no
exec "$@"
