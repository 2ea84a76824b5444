#!/usr/bin/env bash
# Live streaming benchmark (not a test): one `peercdn broadcast` source and N `peercdn engine`
# viewers on 127.0.0.1, each viewer with one player, against the same source served as plain
# HLS by nginx in the same run.
#
# Setup, per N (BENCH_N, default "10 30 60"), BENCH_SECONDS (default 120) of measurement:
#   - source: ffmpeg testsrc2 320x240 25 fps + sine, x264 ultrafast CBR 1900k with a 1-second
#     closed GOP, AAC 96k, MPEG-TS (~2 Mbit/s muxed), generated once; `peercdn broadcast` paces
#     it in real time, publishes the CDN layout into a directory that nginx serves (one
#     process, log format `$msec $request_uri $bytes_sent`), upload capped at 750 kB/s (3× the
#     bitrate); viewers get no --cdn, so every byte they get comes from the swarm;
#   - N viewers: `peercdn engine --upload-limit 500KB` (2× the bitrate), each told the source
#     and the viewer started before it (PEX does the rest);
#   - one player per viewer: `getstream?format=json` → playback_url, then
#     `ffmpeg -c copy -f null` on it. Players REMUX, they do not decode: N=60 decoders would
#     not fit on 2 cores next to 60 engines (decoding is proven by crates/cli/tests/live.rs);
#   - min(N, 10) HLS players: `ffmpeg -c copy -f null` on nginx's live.m3u8.
# Sampled every BENCH_SAMPLE s (default 1): each player's media time (out_time_us of its
# -progress file) and delay_ms from its stat_url (delay of the piece it is at; samples before
# its first frame are skipped); the piece timestamps (seg/INDEX.hdr bytes 4..12, big-endian µs)
# as they are published. Before and after the window: /api/v1/live/ID of the source (uploaded)
# and of every viewer (p2p_downloaded, cdn_downloaded), each viewer's utime+stime
# (/proc/PID/stat) and, at the end, its peak RSS (VmHWM).
#
# Table, one row per N:
#   continuity  per player, from its first frame on: a simulated player starts with the media
#               received so far and plays in real time; over each sample interval it plays if
#               the media received ≥ position + interval, else it stalls for the difference
#               (position waits). played / (played + stalled); mean over players (worst).
#               The first frame is the first sample with ≥ BENCH_START_MEDIA (0.5) s of media:
#               ffmpeg 5.1 reports its first packet (~20 ms) and then holds its probed data
#               back for 1-2 s before writing it, which is ffmpeg's, not a stall.
#               ffmpeg reports progress every 0.25 s and its first report can fall inside the
#               burst it writes when probing ends: the media held at the first frame is taken
#               as max(media then, media at the next sample − the interval).
#   delay       p50 / p95 of the players' delay_ms samples, seconds.
#   source up ÷ bitrate   the source's upload over the window ÷ the muxed bitrate.
#   from source share of the viewers' received bytes that the source uploaded.
#   join        median of BENCH_JOINS (5) timed `ffmpeg -analyzeduration 500000 -i
#               VIEWER/ace/getstream?id=ID&pid=joinK -frames:v 1 -f null -` (request to first
#               decoded frame), spread over the window and over viewers that already play the
#               stream. ffmpeg's default probing reads 5 s of media before it decodes anything,
#               so on a real-time stream it measures ffmpeg, not the engine: each join is also
#               timed that way and printed in the notes.
#   CPU, RSS    per viewer engine: CPU % of one core over the window; peak RSS mean / max.
#   HLS delay   per segment request in nginx's log during the window: request time − the
#               piece's source timestamp; p50 / p95.
#   origin kB/s per viewer: HLS = nginx bytes_sent in the window / HLS players / s;
#               peercdn = the source's upload / N / s.
#   host busy   the whole machine's CPU use over the window (2 cores here: watch for overload).
# Then the goals (continuity ≥ 99.9 %, p95 delay ≤ 2 s, join ≤ 1 s, source upload ≤ 2×
# bitrate, RSS ≤ 64 MiB per viewer) and, per N, the goals missed plus notes.
# Between N values everything is stopped and its ports are waited for. The orchestration and
# statistics are in scripts/bench_live.py (stdlib Python); it kills only the processes it
# started, on exit, INT and TERM.
#
# Environment:
#   BENCH_N             viewer counts (default "10 30 60")
#   BENCH_SECONDS       measurement window per N (default 120)
#   BENCH_SAMPLE        sampling interval, s (default 1)
#   BENCH_JOINS         join measurements per N (default 5)
#   BENCH_START_MEDIA   media (s) that marks a player's first frame (default 0.5)
#   BENCH_JOIN_PROBE_US ffmpeg -analyzeduration of the joins, µs (default 500000)
#   BENCH_HLS_PLAYERS   cap on HLS players (default 10)
#   BENCH_KEEP=1        keep the work directory (logs, progress files, nginx log)
#   BENCH_PIECE_MS      the broadcaster's --piece-ms (default: its own, 500)
#   BENCH_VIDEO_KBPS    the source's video bit rate, kbit/s (default 1900); the upload caps
#                       scale with it (3x and 2x the muxed rate)
#   BENCH_SKIP_BUILD=1  use the existing target/release/peercdn
#   PEERCDN_BIN         peercdn binary to use (default target/release/peercdn; no build)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

log() { printf '[bench-live] %s\n' "$*" >&2; }
die() { printf '[bench-live] FATAL: %s\n' "$*" >&2; exit 1; }

PEERCDN="${PEERCDN_BIN:-$REPO_ROOT/target/release/peercdn}"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${PEERCDN_BIN:-}" ]]; then
    log "cargo build --release -p peercdn"
    cargo build --release -p peercdn >&2
fi
[[ -x "$PEERCDN" ]] || die "no peercdn binary at $PEERCDN"
command -v ffmpeg >/dev/null || die "ffmpeg not found (apt-get install ffmpeg)"
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || die "nginx not found (apt-get install nginx)"

# The Python side owns every process of the run and cleans them up itself (exec: signals reach
# it directly, no process of ours is left behind in between).
export PEERCDN_BIN="$PEERCDN"
exec /usr/bin/python3 "$REPO_ROOT/scripts/bench_live.py"
