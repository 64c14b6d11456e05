#!/usr/bin/env bash
# Runs Confab's whole test suite — unit, integration and the end-to-end flows
# in headless Chromium — on a fresh Debian machine with the Rust toolchain.
#
# It installs missing packages (postgresql, redis-server, chromium,
# chromium-driver, prometheus, python3, and localstripe in .confab/payments-venv), puts the default local model in ./.confab/models once
# (the local-model tests run real inference on it; CONFAB_TEST_LOCAL_MODEL
# names another file), uses the PostgreSQL on 127.0.0.1:5432 and the Redis on
# 127.0.0.1:6379 when they answer, and otherwise starts private ones in
# a temporary folder (stopped and removed on exit). CONFAB_TEST_DATABASE_URL and
# CONFAB_TEST_REDIS_URL point it elsewhere. Every run, passing or not, writes
# target/test-report.html (scripts/report.py).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
CONFAB_DATA_DIR="$root/.confab" ./scripts/deps.sh --browser --model --monitoring --payments
export CONFAB_TEST_LOCAL_MODEL="${CONFAB_TEST_LOCAL_MODEL:-$root/.confab/models/SmolLM2-135M-Instruct.Q4_1.gguf}"

source "$root/scripts/infra.sh"

mkdir -p target
rm -f target/e2e-report.txt
# Build the test binaries first, so that the time printed below is the
# suite's own (a fresh clone compiles them here).
status=0
cargo test --workspace --locked --no-run "$@" 2>&1 | tee target/test-output.log || status=$?
start=$(date +%s)
if [ "$status" -eq 0 ]; then
  cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee target/test-output.log || status=$?
fi
echo "suite finished in $(( $(date +%s) - start ))s (after build)" | tee target/test-summary.txt >&2
if [ -f target/e2e-report.txt ]; then
  echo "== end-to-end flow timings vs tests/unified/e2e/baseline.json ==" >&2
  sort target/e2e-report.txt >&2
fi
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "total: %d passed, %d failed\n", p, f }' target/test-output.log
# The HTML dashboard of this run (per test, flow timings against the
# baseline with a plot, failures with their output, screenshots and logs).
python3 scripts/report.py
exit "$status"
