#!/usr/bin/env bash
# prepare.sh makes a fresh machine ready for the tests and the demo, then runs its arguments:
# Debian's openssh-server (the lab's git server) and the npm dependencies, Node 24 among them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/sbin/sshd ]; then
  echo "prepare: installing openssh-server (the lab's git server)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
fi
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "prepare: npm ci" >&2
  npm ci --no-audit --no-fund >/dev/null
fi
export PATH="$PWD/node_modules/.bin:$PATH"
exec "$@"
