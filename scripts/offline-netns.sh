#!/usr/bin/env bash
# offline-netns.sh CMD [ARGS...]: run CMD in a new network namespace that has only loopback
# (127.0.0.0/8; needs root and util-linux's unshare). Nothing CMD starts can reach beyond this
# machine: `make test` runs the Ray tests this way, since Ray probes cloud metadata addresses
# and phones home when it starts. Exit status: CMD's.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
exec unshare --net -- sh -c 'ip link set lo up && exec "$@"' offline-netns "$@"
