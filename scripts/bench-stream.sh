#!/usr/bin/env bash
# Streaming start-up benchmark (not a test): how long until the first 64 KiB of a file
# arrive over HTTP, peercdn (`peercdn engine`, Ace Stream API) against rqbit (`rqbit server`,
# its /torrents/{id}/stream/{file} API). One libtorrent seeder (lt_peer.py, not rate-limited)
# of a ~200 MB multi-file torrent on 127.0.0.1; every repetition starts a fresh client with an
# empty data directory, so nothing is downloaded when the clock starts.
#
# Cases (time from the first request that names the content to the end of the 64 KiB body):
#   known    the client is handed the .torrent (peercdn: getstream?url=<.torrent on a local
#            HTTP server>; rqbit: POST /torrents with the file), then reads bytes 0-65535
#            of the largest file;
#   magnet   the info hash only plus the seeder's address (peercdn: getstream?infohash=ID with
#            `--peer`; rqbit: POST magnet with initial_peers), metadata via ut_metadata;
#   seek80   like `known`, but the first read is 64 KiB at 80 % of the largest file.
# Each case runs BENCH_REPS times (default 5) per client; the table shows the median in ms and
# peercdn/rqbit (below 1: peercdn is faster). A failed or wrong-sized read makes a cell FAIL.
#
# Environment:
#   BENCH_SIZE_MIB      total size (default 200)
#   BENCH_REPS          repetitions per case (default 5)
#   BENCH_SKIP_BUILD=1  use the existing target/release/peercdn
#   PEERCDN_BIN         peercdn binary to use (default target/release/peercdn)
#   BENCH_BASELINE_BIN  another peercdn binary (e.g. a build of the previous commit): adds a
#                       baseline column measured in the same run, for before/after
#   RQBIT_BIN           rqbit binary (default: PATH, then ~/.cache/peercdn-bench/rqbit/bin/rqbit,
#                       else `cargo install rqbit --root ~/.cache/peercdn-bench/rqbit`)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

PY=/usr/bin/python3
LT_PEER="$REPO_ROOT/tests/interop/lt_peer.py"
SIZE_MIB="${BENCH_SIZE_MIB:-200}"
REPS="${BENCH_REPS:-5}"
RQBIT_ROOT="$HOME/.cache/peercdn-bench/rqbit"
PEERCDN="${PEERCDN_BIN:-$REPO_ROOT/target/release/peercdn}"
CHUNK=65536

WORK="$(mktemp -d "${TMPDIR:-/tmp}/peercdn-bench-stream.XXXXXX")"
BG_PIDS=()   # long-lived background processes (seeder, .torrent server)
CLIENT_PID=""  # the client of the current repetition

cleanup() {
    local pid
    [[ -n "$CLIENT_PID" ]] && kill "$CLIENT_PID" 2>/dev/null || true
    [[ -n "$CLIENT_PID" ]] && wait "$CLIENT_PID" 2>/dev/null || true
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[bench-stream] %s\n' "$*" >&2; }
die() { printf '[bench-stream] FATAL: %s\n' "$*" >&2; exit 1; }

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now_ns() { date +%s%N; }

# wait_line FILE PATTERN SECONDS PID: until FILE has a line matching PATTERN.
wait_line() {
    local f="$1" pat="$2" limit="$3" pid="$4" i
    for ((i = 0; i < limit * 20; i++)); do
        grep -q "$pat" "$f" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { log "process $pid died: $(tail -3 "$f")"; return 1; }
        sleep 0.05
    done
    log "timed out waiting for '$pat' in $f"
    return 1
}

# fetch URL FROM: GET bytes FROM..FROM+64KiB-1 into $WORK/chunk; succeeds only on a 206
# with a full 64 KiB body.
fetch() {
    local url="$1" from="$2" out
    out=$(curl -s --noproxy '*' --max-time 60 -o "$WORK/chunk" -r "$from-$((from + CHUNK - 1))" \
        -w '%{http_code} %{size_download}' "$url") || { log "GET $url @ $from: curl failed"; return 1; }
    [[ "$out" == "206 $CHUNK" ]] || { log "GET $url @ $from: $out"; return 1; }
}

# verify FROM: $WORK/chunk holds the big file's bytes at FROM (checked after the clock stops).
verify() {
    cmp -s "$WORK/chunk" <(tail -c +"$(($1 + 1))" "$BIG_PATH" | head -c "$CHUNK") \
        || { log "wrong bytes at $1"; return 1; }
}

urlencode() { "$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

# ------------------------------------------------------------------ data, seeder

make_data() {
    local dir="$WORK/seed/bench"
    mkdir -p "$dir/extra"
    local big=$((SIZE_MIB * 80 / 100)) rest=$((SIZE_MIB * 20 / 100))
    log "data: ${SIZE_MIB} MiB in 4 files"
    head -c "$((big * 1048576 + 12345))" /dev/urandom >"$dir/movie.ts"
    head -c "$((rest * 1048576 * 3 / 4 + 777))" /dev/urandom >"$dir/extra/a.bin"
    head -c "$((rest * 1048576 / 4 + 3))" /dev/urandom >"$dir/extra/b.bin"
    echo "streaming benchmark" >"$dir/readme.txt"
    mkdir -p "$WORK/www"
    IH=$("$PY" "$LT_PEER" create --path "$dir" --out "$WORK/www/bench.torrent")
    BIG_PATH="$dir/movie.ts"
    BIG_LEN=$(stat -c %s "$BIG_PATH")
    SEEK_AT=$((BIG_LEN * 8 / 10 + 4321))
    BIG_INDEX=$("$PY" -c '
import sys, libtorrent as lt
fs = lt.torrent_info(sys.argv[1]).files()
print([fs.file_path(i) for i in range(fs.num_files())].index("bench/movie.ts"))' "$WORK/www/bench.torrent")
    log "torrent $IH, movie.ts is file $BIG_INDEX ($BIG_LEN bytes)"
}

start_seeder() {
    "$PY" "$LT_PEER" seed --torrent "$WORK/www/bench.torrent" --save "$WORK/seed" \
        --port-file "$WORK/seed.port" >"$WORK/seed.log" 2>&1 &
    BG_PIDS+=($!)
    wait_line "$WORK/seed.log" '^STATUS .*state=seeding' 120 "${BG_PIDS[-1]}" \
        || die "the libtorrent seeder did not start"
    SEED="127.0.0.1:$(cat "$WORK/seed.port")"
    local port
    port=$(free_port)
    "$PY" -m http.server --bind 127.0.0.1 --directory "$WORK/www" "$port" \
        >"$WORK/www.log" 2>&1 &
    BG_PIDS+=($!)
    TORRENT_URL="http://127.0.0.1:$port/bench.torrent"
    local i
    for ((i = 0; i < 100; i++)); do
        curl -s --noproxy '*' -o /dev/null "$TORRENT_URL" && break
        sleep 0.05
    done
    log "seeder $SEED, .torrent at $TORRENT_URL"
}

# ------------------------------------------------------------------ clients

stop_client() {
    if [[ -n "$CLIENT_PID" ]]; then
        kill "$CLIENT_PID" 2>/dev/null || true
        wait "$CLIENT_PID" 2>/dev/null || true
        CLIENT_PID=""
    fi
}

# peercdn_start: fresh engine knowing the seeder; sets API.
peercdn_start() {
    local d="$WORK/pc"
    rm -rf "$d"
    mkdir -p "$d"
    PEERCDN_LOG=warn "$PEERCDN" engine --port 0 --bind 127.0.0.1 --no-dht --http-port 0 \
        --data-dir "$d/data" --peer "$SEED" >"$d/log" 2>&1 &
    CLIENT_PID=$!
    wait_line "$d/log" '^http: ' 30 "$CLIENT_PID" || return 1
    API=$(grep -m1 '^http: ' "$d/log" | cut -c7- | tr -d '\r' | sed 's:/*$::')
}

# peercdn_case CASE: one measurement, in ms, into RESULT.
peercdn_case() {
    local t0 t1 url from=0
    peercdn_start || { stop_client; return 1; }
    case "$1" in
        known) url="$API/ace/getstream?url=$(urlencode "$TORRENT_URL")" ;;
        magnet) url="$API/ace/getstream?infohash=$IH" ;;
        seek80) url="$API/ace/getstream?url=$(urlencode "$TORRENT_URL")"; from=$SEEK_AT ;;
    esac
    url="$url&file_index=$BIG_INDEX"
    t0=$(now_ns)
    fetch "$url" "$from" || { log "peercdn: $(tail -3 "$WORK/pc/log")"; stop_client; return 1; }
    t1=$(now_ns)
    stop_client
    verify "$from" || return 1
    RESULT=$(((t1 - t0) / 1000000))
}

find_rqbit() {
    if [[ -n "${RQBIT_BIN:-}" ]]; then echo "$RQBIT_BIN"; return 0; fi
    if command -v rqbit >/dev/null 2>&1; then command -v rqbit; return 0; fi
    if [[ -x "$RQBIT_ROOT/bin/rqbit" ]]; then echo "$RQBIT_ROOT/bin/rqbit"; return 0; fi
    log "rqbit: cargo install rqbit --root $RQBIT_ROOT (one time, slow)"
    cargo install --locked rqbit --root "$RQBIT_ROOT" >"$WORK/rqbit-install.log" 2>&1 \
        || { log "rqbit install failed: $(tail -3 "$WORK/rqbit-install.log")"; return 1; }
    echo "$RQBIT_ROOT/bin/rqbit"
}

# rqbit_flags: the loopback-only flags this rqbit understands (read from its --help).
rqbit_flags() {
    local top sub
    top=$("$RQBIT" --help 2>&1)
    sub=$("$RQBIT" server start --help 2>&1)
    RQ_TOP=()
    RQ_SUB=()
    local f
    for f in --disable-dht --disable-dht-persistence --disable-upnp-port-forward --ipv4-only; do
        grep -Eq -- "$f([[:space:],=]|\$)" <<<"$top" && RQ_TOP+=("$f")
    done
    grep -q -- '--listen-ip' <<<"$top" && RQ_TOP+=(--listen-ip 127.0.0.1)
    grep -q -- '--disable-persistence' <<<"$sub" && RQ_SUB+=(--disable-persistence)
    grep -q -- '--listen-port' <<<"$top" || { log "no --listen-port in rqbit --help"; return 1; }
    grep -q -- '--http-api-listen-addr' <<<"$top" || { log "no --http-api-listen-addr"; return 1; }
}

rqbit_start() {
    local d="$WORK/rq" hp
    rm -rf "$d"
    mkdir -p "$d"
    hp=$(free_port)
    env XDG_CACHE_HOME="$d/cache" XDG_DATA_HOME="$d/data" XDG_CONFIG_HOME="$d/config" \
        "$RQBIT" "${RQ_TOP[@]}" --listen-port "$(free_port)" \
        --http-api-listen-addr "127.0.0.1:$hp" \
        server start "${RQ_SUB[@]}" "$d/out" >"$d/log" 2>&1 &
    CLIENT_PID=$!
    API="http://127.0.0.1:$hp"
    local i
    for ((i = 0; i < 600; i++)); do
        curl -s --noproxy '*' -o /dev/null "$API/" && return 0
        kill -0 "$CLIENT_PID" 2>/dev/null || { log "rqbit died: $(tail -3 "$d/log")"; return 1; }
        sleep 0.05
    done
    return 1
}

# rqbit_add BODY-ARGS...: POST /torrents with initial peers; prints the torrent id.
rqbit_add() {
    local out
    out=$(curl -s --noproxy '*' --max-time 60 -X POST "$@" \
        "$API/torrents?overwrite=true&initial_peers=$SEED") || return 1
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["id"])' <<<"$out" \
        || { log "rqbit add: $out"; return 1; }
}

# rqbit_case CASE: one measurement, in ms, into RESULT.
rqbit_case() {
    local t0 t1 id from=0
    rqbit_start || { stop_client; return 1; }
    t0=$(now_ns)
    case "$1" in
        known) id=$(rqbit_add --data-binary "@$WORK/www/bench.torrent") ;;
        magnet) id=$(rqbit_add --data-binary "magnet:?xt=urn:btih:$IH") ;;
        seek80) id=$(rqbit_add --data-binary "@$WORK/www/bench.torrent"); from=$SEEK_AT ;;
    esac
    [[ -n "$id" ]] || { stop_client; return 1; }
    fetch "$API/torrents/$id/stream/$BIG_INDEX" "$from" || { stop_client; return 1; }
    t1=$(now_ns)
    stop_client
    verify "$from" || return 1
    RESULT=$(((t1 - t0) / 1000000))
}

# median CLIENT CASE: run REPS times; MEDIAN = the median ms, or FAIL.
median() {
    local client="$1" case="$2" vals=() i
    for ((i = 0; i < REPS; i++)); do
        if "${client}_case" "$case"; then
            vals+=("$RESULT")
        else
            MEDIAN=FAIL
            return 0
        fi
    done
    log "$client $case: ${vals[*]} ms"
    MEDIAN=$(printf '%s\n' "${vals[@]}" | sort -n | sed -n "$(((REPS + 1) / 2))p")
}

# ------------------------------------------------------------------ main

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${PEERCDN_BIN:-}" ]]; then
    log "cargo build --release -p peercdn"
    cargo build --release -p peercdn >&2
fi
[[ -x "$PEERCDN" ]] || die "no peercdn binary at $PEERCDN"
"$PY" -c 'import libtorrent' 2>/dev/null || die "/usr/bin/python3 cannot import libtorrent"

make_data
start_seeder

HAVE_RQBIT=0
if RQBIT=$(find_rqbit) && rqbit_flags; then
    HAVE_RQBIT=1
    log "rqbit: $RQBIT ($("$RQBIT" --version 2>&1 | head -1))"
fi

# baseline_case CASE: peercdn_case with the baseline binary.
baseline_case() {
    local saved="$PEERCDN" rc=0
    PEERCDN="$BASELINE"
    peercdn_case "$1" || rc=$?
    PEERCDN="$saved"
    return "$rc"
}

BASELINE="${BENCH_BASELINE_BIN:-}"
[[ -z "$BASELINE" || -x "$BASELINE" ]] || die "BENCH_BASELINE_BIN=$BASELINE is not an executable"

ROWS=()
BROWS=()
for c in known magnet seek80; do
    if [[ -n "$BASELINE" ]]; then
        median baseline "$c"
        b=$MEDIAN
    fi
    median peercdn "$c"
    p=$MEDIAN
    r=n/a
    if [[ "$HAVE_RQBIT" == 1 ]]; then
        median rqbit "$c"
        r=$MEDIAN
    fi
    ratio=n/a
    if [[ "$p" =~ ^[0-9]+$ && "$r" =~ ^[0-9]+$ && "$r" -gt 0 ]]; then
        ratio=$(awk -v a="$p" -v b="$r" 'BEGIN { printf "%.2f", a / b }')
    fi
    ROWS+=("| $c | $p | $r | $ratio |")
    if [[ -n "$BASELINE" ]]; then
        bratio=n/a
        if [[ "$p" =~ ^[0-9]+$ && "$b" =~ ^[0-9]+$ && "$b" -gt 0 ]]; then
            bratio=$(awk -v a="$p" -v b="$b" 'BEGIN { printf "%.2f", a / b }')
        fi
        BROWS+=("| $c | $p | $b | $bratio |")
    fi
done

echo
echo "Time to the first 64 KiB over HTTP (median of $REPS, ${SIZE_MIB} MiB torrent, one libtorrent seeder on 127.0.0.1)"
echo
echo "| case | peercdn ms | rqbit ms | ratio |"
echo "|---|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
if [[ -n "$BASELINE" ]]; then
    echo
    echo "Against the baseline binary, same run"
    echo
    echo "| case | peercdn ms | baseline ms | ratio |"
    echo "|---|---:|---:|---:|"
    printf '%s\n' "${BROWS[@]}"
fi
