#!/usr/bin/env bash
# Runs Confab on this machine: installs the PostgreSQL and Redis server
# packages if missing, puts the default local model in ./.confab/models once
# (unless CONFAB_LOCAL_MODEL or CONFAB_LLM_BASE_URL chooses another model),
# builds, and starts everything with `confab up` (private database and Redis
# in ./.confab, then auth, backend and web).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CONFAB_LOCAL_MODEL:-}${CONFAB_LLM_BASE_URL:-}" ]; then
  ./scripts/deps.sh --model
else
  ./scripts/deps.sh
fi
exec cargo run --release --locked -p confab -- up "$@"
