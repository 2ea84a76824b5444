#!/usr/bin/env bash
# Discovery benchmark (not a test): on a private mainline DHT of 20 peercdn nodes on 127.0.0.1
# (a bootstrap engine, 17 idle engines, a publisher seeding a VoD torrent, a broadcaster running a
# looped live stream), how long a fresh viewer that knows only the content ID takes from
# `GET /ace/getstream?id=ID` to the first body byte, for VoD and for live. Goal: ≤ 2 s.
#
# Every repetition starts a fresh viewer engine (new data dir: no DHT state file, no resume data,
# DHT on with the private bootstrap node only, no --peer) per case, waits for its `http:` line
# (the API is up), then starts the clock and sends the request. The clock stops at the first
# byte of the response body (headers alone do not count). So what is measured includes the
# viewer's DHT bootstrap, the get_peers lookup, dialling, the metadata (VoD: the info dictionary;
# live: the descriptor) and the first piece. The engine start-to-request delay (spawn to the
# request) is printed separately and is not in the figures. After the clock stops, a VoD run
# checks that the first 64 KiB are the published file's bytes and a live run that 64 KiB arrive.
#
# Environment:
#   BENCH_REPS          repetitions per case (default 5)
#   BENCH_NODES         total DHT nodes (default 20: bootstrap + N-3 idle + publisher + broadcaster)
#   BENCH_VOD_MIB       size of the VoD file (default 16)
#   BENCH_WAIT_DHT=1    also wait until the viewer's DHT routing table is non-empty before the
#                       request (a viewer whose engine has been running a moment); default 0
#   BENCH_KEEP=1        keep the work directory (every node's and viewer's log) for a post-mortem
#   BENCH_SKIP_BUILD=1  use the existing target/release/peercdn
#   PEERCDN_BIN         peercdn binary to use (default target/release/peercdn)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

PY=/usr/bin/python3
REPS="${BENCH_REPS:-5}"
NODES="${BENCH_NODES:-20}"
VOD_MIB="${BENCH_VOD_MIB:-16}"
WAIT_DHT="${BENCH_WAIT_DHT:-0}"
PEERCDN="${PEERCDN_BIN:-$REPO_ROOT/target/release/peercdn}"
GOAL_MS=2000
CHUNK=65536

WORK="$(mktemp -d "${TMPDIR:-/tmp}/peercdn-bench-discovery.XXXXXX")"
BG_PIDS=()     # the 20 DHT nodes
VIEWER_PID=""  # the viewer of the current repetition

cleanup() {
    local pid
    [[ -n "$VIEWER_PID" ]] && kill "$VIEWER_PID" 2>/dev/null || true
    [[ -n "$VIEWER_PID" ]] && wait "$VIEWER_PID" 2>/dev/null || true
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[bench-discovery] %s\n' "$*" >&2; }
die() { printf '[bench-discovery] FATAL: %s\n' "$*" >&2; exit 1; }

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

# line_value FILE PREFIX: what follows PREFIX on the first line starting with it.
line_value() { grep -m1 "^$2" "$1" | cut -c$((${#2} + 1))- | tr -d '\r' | sed 's:/*$::'; }

# dht_field API FIELD: a number from GET API/api/v1/dht (0 if unavailable).
dht_field() {
    curl -s --noproxy '*' --max-time 5 "$1/api/v1/dht" 2>/dev/null \
        | "$PY" -c 'import json, sys
try: print(int(json.load(sys.stdin).get(sys.argv[1]) or 0))
except Exception: print(0)' "$2"
}

# node NAME ARGS...: starts a peercdn node in the background with its own data dir and log
# (PID in LAST_PID, log in $WORK/NAME.log).
node() {
    local name="$1"
    shift
    PEERCDN_LOG="${PEERCDN_LOG:-warn}" "$PEERCDN" "$@" --bind 127.0.0.1 \
        --data-dir "$WORK/$name-data" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
}

# ------------------------------------------------------------------ the 20-node network

make_data() {
    mkdir -p "$WORK/pub"
    head -c "$((VOD_MIB * 1048576 + 4321))" /dev/urandom >"$WORK/pub/movie.bin"
    ffmpeg -nostdin -hide_banner -v error -y \
        -f lavfi -t 10 -i testsrc2=size=320x240:rate=25 \
        -f lavfi -t 10 -i sine=frequency=440:sample_rate=48000 \
        -c:v libx264 -preset ultrafast -x264-params keyint=25:min-keyint=25:scenecut=0:nal-hrd=cbr \
        -b:v 1000k -maxrate 1000k -bufsize 1000k -c:a aac -b:a 96k \
        -f mpegts "$WORK/source.ts" || die "ffmpeg could not make the live source"
}

start_network() {
    local i idle=$((NODES - 3)) api
    BOOT_PORT=$(free_port)
    BOOT="127.0.0.1:$BOOT_PORT"
    # The first node of a network has an EMPTY bootstrap list (only peercdn.toml can say so);
    # the mainline crate then adds every node that asks it find_node. Naming itself with
    # --dht-bootstrap would leave its routing table empty for good.
    echo 'dht_bootstrap = []' >"$WORK/boot.toml"
    node boot engine --config "$WORK/boot.toml" --port "$BOOT_PORT" --http-port 0
    BG_PIDS+=("$LAST_PID")
    wait_line "$WORK/boot.log" '^http: ' 30 "$LAST_PID" || die "bootstrap node did not start"
    BOOT_API=$(line_value "$WORK/boot.log" 'http: ')
    IDLE_APIS=()
    for ((i = 0; i < idle; i++)); do
        node "dht$i" engine --port 0 --http-port 0 --dht-bootstrap "$BOOT"
        BG_PIDS+=("$LAST_PID")
    done
    for ((i = 0; i < idle; i++)); do
        wait_line "$WORK/dht$i.log" '^http: ' 30 "${BG_PIDS[$((i + 1))]}" || die "dht$i did not start"
        IDLE_APIS+=("$(line_value "$WORK/dht$i.log" 'http: ')")
    done
    log "$((idle + 1)) engines up; waiting for the routing tables"
    local settled=0
    for ((i = 0; i < 300; i++)); do
        settled=1
        [[ $(dht_field "$BOOT_API" nodes) -ge $idle ]] || settled=0
        if [[ $settled == 1 ]]; then
            for api in "${IDLE_APIS[@]}"; do
                [[ $(dht_field "$api" nodes) -ge 1 ]] || { settled=0; break; }
            done
        fi
        [[ $settled == 1 ]] && break
        sleep 0.1
    done
    [[ $settled == 1 ]] || die "the DHT did not settle in 30 s"

    node publisher publish "$WORK/pub/movie.bin" -o "$WORK/movie.torrent" --port 0 \
        --dht-bootstrap "$BOOT"
    BG_PIDS+=("$LAST_PID")
    wait_line "$WORK/publisher.log" '^id: ' 60 "$LAST_PID" || die "publisher did not start"
    VOD_ID=$(line_value "$WORK/publisher.log" 'id: ')

    node broadcast broadcast --input "$WORK/source.ts" --loop --name "bench channel" \
        --port 0 --http-port 0 --dht-bootstrap "$BOOT"
    BG_PIDS+=("$LAST_PID")
    wait_line "$WORK/broadcast.log" '^http: ' 30 "$LAST_PID" || die "broadcaster did not start"
    LIVE_ID=$(line_value "$WORK/broadcast.log" 'id: ')
    BC_API=$(line_value "$WORK/broadcast.log" 'http: ')
    for ((i = 0; i < 300; i++)); do
        [[ $(dht_field "$BC_API" announces) -ge 1 ]] && break
        sleep 0.1
    done
    [[ $(dht_field "$BC_API" announces) -ge 1 ]] || die "the broadcaster's DHT announce failed"
    # The publisher announced at start too, before the broadcaster: give it the same second.
    sleep 1
    log "$NODES nodes: bootstrap $BOOT, VoD $VOD_ID, live $LIVE_ID"
}

# ------------------------------------------------------------------ one measurement

stop_viewer() {
    if [[ -n "$VIEWER_PID" ]]; then
        kill "$VIEWER_PID" 2>/dev/null || true
        wait "$VIEWER_PID" 2>/dev/null || true
        VIEWER_PID=""
    fi
}

# first_byte URL OUT: prints the ms from sending the request to the first body byte, then reads
# up to 64 KiB (clock stopped) into OUT. Fails on a non-200 answer or an empty body.
first_byte() {
    "$PY" - "$1" "$2" "$CHUNK" <<'EOF'
import http.client, sys, time, urllib.parse
url, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlsplit(url)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
t0 = time.monotonic()
c.request("GET", u.path + "?" + u.query)
r = c.getresponse()
if r.status != 200:
    sys.exit("HTTP %d: %r" % (r.status, r.read(300)))
first = r.read(1)
t1 = time.monotonic()
if not first:
    sys.exit("empty body")
rest = first
while len(rest) < n:
    b = r.read1(n - len(rest))
    if not b:
        break
    rest += b
open(out, "wb").write(rest)
print(round((t1 - t0) * 1000))
EOF
}

# one_case CASE REP: fresh viewer, one request; RESULT = ms to the first byte, STARTUP = ms from
# spawn to the request (the API is up, and with BENCH_WAIT_DHT=1 the routing table has a node).
one_case() {
    local kind="$1" name="viewer-$1-$2" id t0 t1 api i
    t0=$(now_ns)
    node "$name" engine --port 0 --http-port 0 --dht-bootstrap "$BOOT"
    VIEWER_PID=$LAST_PID
    wait_line "$WORK/$name.log" '^http: ' 30 "$VIEWER_PID" || { stop_viewer; return 1; }
    api=$(line_value "$WORK/$name.log" 'http: ')
    if [[ "$WAIT_DHT" == 1 ]]; then
        for ((i = 0; i < 100; i++)); do
            [[ $(dht_field "$api" nodes) -ge 1 ]] && break
            sleep 0.05
        done
    fi
    t1=$(now_ns)
    STARTUP=$(((t1 - t0) / 1000000))
    case "$kind" in
        vod) id=$VOD_ID ;;
        live) id=$LIVE_ID ;;
    esac
    RESULT=$(first_byte "$api/ace/getstream?id=$id" "$WORK/chunk") \
        || { log "$kind: request failed; viewer log: $(tail -3 "$WORK/$name.log")"; stop_viewer; return 1; }
    stop_viewer
    rm -rf "$WORK/$name-data"
    case "$kind" in
        vod)
            cmp -s "$WORK/chunk" <(head -c "$CHUNK" "$WORK/pub/movie.bin") \
                || { log "vod: wrong bytes"; return 1; } ;;
        live)
            [[ $(stat -c %s "$WORK/chunk") -eq $CHUNK ]] || { log "live: short body"; return 1; } ;;
    esac
}

# run_case CASE: REPS measurements; sets ROW.
run_case() {
    local kind="$1" vals=() starts=() i med mn mx ratio
    for ((i = 0; i < REPS; i++)); do
        if one_case "$kind" "$((i + 1))"; then
            vals+=("$RESULT")
            starts+=("$STARTUP")
            log "$kind run $((i + 1)): first byte ${RESULT} ms (engine start to request ${STARTUP} ms)"
        else
            ROW="| $kind | FAIL | | | ≤ $GOAL_MS | |"
            return 0
        fi
    done
    med=$(printf '%s\n' "${vals[@]}" | sort -n | sed -n "$(((REPS + 1) / 2))p")
    mn=$(printf '%s\n' "${vals[@]}" | sort -n | head -1)
    mx=$(printf '%s\n' "${vals[@]}" | sort -n | tail -1)
    ratio=$(awk -v a="$med" -v b="$GOAL_MS" 'BEGIN { printf "%.2f", a / b }')
    local smed
    smed=$(printf '%s\n' "${starts[@]}" | sort -n | sed -n "$(((REPS + 1) / 2))p")
    ROW="| $kind | $med | $mn | $mx | ≤ $GOAL_MS | $ratio | $smed |"
}

# ------------------------------------------------------------------ main

[[ "$NODES" -ge 4 ]] || die "BENCH_NODES must be at least 4"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${PEERCDN_BIN:-}" ]]; then
    log "cargo build --release -p peercdn"
    cargo build --release -p peercdn >&2
fi
[[ -x "$PEERCDN" ]] || die "no peercdn binary at $PEERCDN"
command -v ffmpeg >/dev/null || die "ffmpeg is needed (apt-get install ffmpeg)"

make_data
start_network

ROWS=()
for c in vod live; do
    run_case "$c"
    ROWS+=("$ROW")
done

echo
echo "Time from GET /ace/getstream?id=ID (ID only) to the first body byte: median of $REPS fresh"
echo "viewers each, private DHT of $NODES peercdn nodes on 127.0.0.1 (VoD: ${VOD_MIB} MiB single file;"
echo "live: 1 Mbit/s looped TS). The clock starts once the viewer's HTTP API is up$(
    [[ "$WAIT_DHT" == 1 ]] && echo " and its DHT has a node")."
echo
echo "| case | median ms | min ms | max ms | goal ms | median/goal | engine start→request ms (median) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
