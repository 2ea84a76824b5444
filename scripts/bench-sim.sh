#!/usr/bin/env bash
# Simulator benchmark, not a test: runs `peercdn sim` (crates/sim, the real core over modelled
# links) and prints two markdown tables from its JSON reports, with the commands that made them.
#
#   validation  `--preset bench-live` at the N of scripts/bench-live.sh (2.1 Mbit/s, source
#               capped at 3x, viewers at 2x, loopback-like RTT), measured over BENCH_SECONDS
#               after a 10 s warm-up (the bench opens its window once every player runs):
#               compare with bench-live.sh's table of real processes (README, "Speed").
#   scale       `--preset goal` (5 Mbit/s, source 100 Mbit/s, viewer uplinks mean 1.5x with
#               30 % below the bitrate, half behind NAT, 40-200 ms RTT, 5 %/min churn).
#
# Columns: delay p50/p95 (players, behind the source), piece arrival p50/p95 (what the
# engine's stat reports for a player that reads at once), relay depth (hops from the source
# of the pieces viewers received), join p95, continuity mean / worst
# 1 % / worst, never-started viewers, source upload ÷ bitrate, the share of the viewers'
# uplink capacity used, and the simulator's cost:
# wall seconds, simulated s per wall s, events per wall s, peak RSS per viewer.
#
# Environment:
#   BENCH_VALIDATE_N   viewer counts of the validation table (default "10 30 60")
#   BENCH_SCALE_N      viewer counts of the scale table (default "100 1000")
#   BENCH_SECONDS      simulated seconds per run (default 60)
#   BENCH_SEED         seed (default 1)
#   BENCH_SKIP_BUILD=1 use the existing target/release/peercdn
#   PEERCDN_BIN        peercdn binary to use (default target/release/peercdn; no build)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

log() { printf '[bench-sim] %s\n' "$*" >&2; }
die() { printf '[bench-sim] FATAL: %s\n' "$*" >&2; exit 1; }

PEERCDN="${PEERCDN_BIN:-$REPO_ROOT/target/release/peercdn}"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${PEERCDN_BIN:-}" ]]; then
    log "cargo build --release -p peercdn"
    cargo build --release -p peercdn >&2
fi
[[ -x "$PEERCDN" ]] || die "no peercdn binary at $PEERCDN"

SECONDS_SIM="${BENCH_SECONDS:-60}"
SEED="${BENCH_SEED:-1}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

run() { # preset n
    local preset="$1" n="$2" secs="$SECONDS_SIM"
    [[ "$preset" == bench-live ]] && secs=$((SECONDS_SIM + 10))
    local cmd=("$PEERCDN" sim --preset "$preset" --viewers "$n" --seconds "$secs" --seed "$SEED" --json "$WORK/$preset-$n.json")
    log "${cmd[*]#"$REPO_ROOT/"}"
    "${cmd[@]}" >/dev/null
}

table() { # title preset ns...
    local title="$1" preset="$2"
    shift 2
    for n in "$@"; do run "$preset" "$n"; done
    /usr/bin/python3 - "$title" "$preset" "$SECONDS_SIM" "$SEED" "$WORK" "$@" <<'PY'
import json, sys
title, preset, secs, seed, work, *ns = sys.argv[1:]
print(f"\n### {title}\n")
shown = int(secs) + (10 if preset == "bench-live" else 0)
note = " (the preset's first 10 s are a warm-up, not measured)" if preset == "bench-live" else ""
print(f"`peercdn sim --preset {preset} --viewers N --seconds {shown} --seed {seed}`{note}\n")
print("| N | delay p50 / p95 s | arrival p50 / p95 s | relay depth p50 / p95 / max | join p95 s | continuity mean / worst 1 % / worst | never started | source up ÷ bitrate | viewer uplinks used | wall s | sim s / wall s | events / wall s | RSS KiB / viewer |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in ns:
    r = json.load(open(f"{work}/{preset}-{n}.json"))
    pct = lambda x: f"{x * 100:.1f} %"
    print(f"| {r['viewers']} | {r['delay_p50_s']:.2f} / {r['delay_p95_s']:.2f} "
          f"| {r['arrival_p50_s']:.2f} / {r['arrival_p95_s']:.2f} "
          f"| {r['depth_p50']} / {r['depth_p95']} / {r['depth_max']} | {r['join_p95_s']:.2f} "
          f"| {pct(r['continuity_mean'])} / {pct(r['continuity_worst1pct'])} / {pct(r['continuity_worst'])} "
          f"| {r['never_started']} | {r['source_upload_x']:.2f}x | {pct(r['viewer_upload_used'])} | {r['wall_s']:.1f} "
          f"| {r['sim_per_wall']:.2f} | {r['events_per_s']:.0f} | {r['bytes_per_viewer'] // 1024} |")
PY
}

read -r -a VALIDATE <<<"${BENCH_VALIDATE_N:-10 30 60}"
read -r -a SCALE <<<"${BENCH_SCALE_N:-100 1000}"
table "Validation (scripts/bench-live.sh conditions)" bench-live "${VALIDATE[@]}"
table "Scale (the goal scenario)" goal "${SCALE[@]}"
