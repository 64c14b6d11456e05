#!/usr/bin/env bash
# Runs a benchmark command with PostgreSQL and Redis provided the way the test
# suite gets them (scripts/infra.sh): run it inside a private network namespace
# on a shared machine, e.g.
#   unshare -n bash -c 'ip link set lo up; ./scripts/bench.sh target/release/bench-load ttft target/release/confab 1 200'
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source "$root/scripts/infra.sh"
"$@"
