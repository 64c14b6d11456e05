#!/usr/bin/env bash
# Runs Confab on this machine: installs the PostgreSQL and Redis server
# packages if missing, builds, and starts everything with `confab up`
# (private database and Redis in ./.confab, then auth, backend and web).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
exec cargo run --release --locked -p confab -- up "$@"
