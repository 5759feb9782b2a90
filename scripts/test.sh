#!/usr/bin/env bash
# Runs the whole test suite: every crate's tests against the embedded SQLite store, and the
# store and API integration tests a second time against a throwaway PostgreSQL server that
# this script starts (and stops) in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

# The notification tests deliver mail to a real local SMTP receiver (aiosmtpd).
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
    python3 -m pip install --quiet aiosmtpd
fi
python3 -c 'import openpyxl' 2>/dev/null || python3 -m pip install --quiet openpyxl  # workbook tests

url=$(scripts/pg-test-server.sh start)
trap 'scripts/pg-test-server.sh stop >/dev/null 2>&1 || true' EXIT
export CHANGEGATE_TEST_DATABASE_URL="$url"
echo "PostgreSQL for tests: $url"

cargo test --workspace
