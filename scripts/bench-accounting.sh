#!/usr/bin/env bash
# Accounting benchmark, not a test: what receipts cost next to the stream they account for.
# Runs the end-to-end accounting test (crates/cli/tests/accounting.rs: a broadcaster with a
# 2 Mbit/s stream, ten relaying viewers with a player each and two CDN-only viewers through
# nginx, all on 127.0.0.1) at each receipt interval, and prints one markdown table: receipt
# bytes every viewer sent (to uploaders, the broadcaster, the HTTP collector) against the
# stream bytes they received — the ratio — and bytes per viewer-minute watched. The same run
# checks the ledger against every engine's counts, so a row is only printed when they agree.
#
# Environment:
#   BENCH_INTERVALS  receipt intervals in seconds (default "2 30")
#   BENCH_STREAM_S   seconds of stream per run (default 150: five rounds at 30 s)
# Needs what the test needs (scripts/test.sh installs it: ffmpeg, nginx, the Python venv).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
export PEERCDN_ACE_PYTHON="${PEERCDN_ACE_PYTHON:-$REPO_ROOT/target/ace-clients/bin/python}"

INTERVALS="${BENCH_INTERVALS:-2 30}"
STREAM_S="${BENCH_STREAM_S:-150}"
rows=()
for iv in $INTERVALS; do
    printf '[bench-accounting] interval %s s, %s s of stream\n' "$iv" "$STREAM_S" >&2
    line=$(PEERCDN_ACCOUNTING_INTERVAL="$iv" PEERCDN_ACCOUNTING_STREAM_S="$STREAM_S" \
        cargo test -q -p peercdn --test accounting -- --nocapture 2>/dev/null | grep '^ACCOUNTING ' || true)
    [[ -n "$line" ]] || { echo "[bench-accounting] FATAL: the run at $iv s failed" >&2; exit 1; }
    rows+=("${line#ACCOUNTING }")
done
printf '%s\n' "${rows[@]}" | python3 -c '
import json, sys
print("| receipt interval | stream | viewers | receipt bytes | stream bytes | receipts ÷ stream | bytes per viewer-minute |")
print("|---|---|---|---|---|---|---|")
for line in sys.stdin:
    r = json.loads(line)
    print(f"| {r[\"interval_s\"]} s | {r[\"stream_s\"]} s | {r[\"viewers\"]} | {r[\"receipt_bytes\"]:,} | "
          f"{r[\"stream_bytes\"]:,} | {100 * r[\"receipt_bytes\"] / r[\"stream_bytes\"]:.3f} % | "
          f"{r[\"receipt_bytes\"] / r[\"viewer_minutes\"]:,.0f} |")
'
echo
echo "command: BENCH_INTERVALS=\"$INTERVALS\" BENCH_STREAM_S=$STREAM_S scripts/bench-accounting.sh"
