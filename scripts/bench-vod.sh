#!/usr/bin/env bash
# VoD transfer benchmark (not a test), both directions, one v1 torrent on 127.0.0.1.
#
# Download direction: one libtorrent seeder; the torrent downloaded four ways, one after
#   another, each into a fresh dir: peercdn (release build), libtorrent (lt_peer.py leech),
#   rqbit (if available), aria2c (finds the seeder through tests/interop/tracker.py); and over
#   uTP, peercdn (`--utp prefer`) and libtorrent (uTP only). Table: seconds (process start to
#   exit), MB/s, peak RSS, and peercdn's speed divided by each client's (uTP rows: peercdn's
#   over uTP).
# Upload direction: the same clients (libtorrent plain, with encryption forced -- MSE and
#   RC4 both ways -- and over uTP only, aria2c, rqbit) download from a libtorrent seeder and from a peercdn
#   seeder (`peercdn get` over the complete data: it checks, then seeds), one seeder up at a
#   time, in the same rounds. Table: MB/s from each seeder, the ratio (peercdn seeder ÷
#   libtorrent seeder; the goal is >= 1.0 for every client) and each seeder's CPU seconds per
#   GB uploaded (user + system, from /proc).
# Data is verified with cmp after each download; a wrong or missing file makes the row FAIL.
#
# Environment:
#   BENCH_DIRECTION     download, upload or both (default both)
#   BENCH_SIZE_MIB      data set size (default 1024)
#   BENCH_PIECE_SIZE    piece size in bytes (default: libtorrent's choice)
#   BENCH_TIMEOUT       seconds allowed per download (default 600)
#   BENCH_ROUNDS        rounds (default 3); tables give the median
#   BENCH_CACHE         where the random data set is kept between runs
#                       (default ${TMPDIR:-/tmp}/peercdn-bench-data)
#   BENCH_RQBIT=0       skip rqbit (no `cargo install`)
#   BENCH_UP_CLIENTS    the upload direction's clients, space-separated (default: libtorrent
#                       libtorrent-rc4 libtorrent-utp aria2c rqbit)
#   BENCH_SKIP_BUILD=1  use the existing target/release/peercdn
#   PEERCDN_BIN         peercdn binary to use (default target/release/peercdn; no build)
#   BENCH_BASELINE_BIN  another peercdn binary (e.g. a build of the previous commit): adds a
#                       `peercdn-baseline` row (download) and seeder column (upload) measured
#                       in the same rounds, for before/after
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

PY=/usr/bin/python3
LT_PEER="$REPO_ROOT/tests/interop/lt_peer.py"
TRACKER="$REPO_ROOT/tests/interop/tracker.py"
SIZE_MIB="${BENCH_SIZE_MIB:-1024}"
TIMEOUT="${BENCH_TIMEOUT:-600}"
CACHE="${BENCH_CACHE:-${TMPDIR:-/tmp}/peercdn-bench-data}"
RQBIT_ROOT="$HOME/.cache/peercdn-bench/rqbit"
PEERCDN="${PEERCDN_BIN:-$REPO_ROOT/target/release/peercdn}"
BASELINE="${BENCH_BASELINE_BIN:-}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/peercdn-bench.XXXXXX")"
BG_PIDS=()   # background processes we started (tracker, seeder)
ROWS=()      # "client|seconds|MBps|rss_mib|status|note"

# ------------------------------------------------------------------ helpers

cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] FATAL: %s\n' "$*" >&2; exit 1; }

# wait_file FILE SECONDS: until FILE is non-empty.
wait_file() {
    local f="$1" limit="$2" i
    for ((i = 0; i < limit * 10; i++)); do
        [[ -s "$f" ]] && return 0
        sleep 0.1
    done
    die "timed out waiting for $f"
}

# wait_line FILE PATTERN SECONDS PID: until FILE has a line matching PATTERN.
wait_line() {
    local f="$1" pat="$2" limit="$3" pid="$4" i
    for ((i = 0; i < limit * 10; i++)); do
        grep -q "$pat" "$f" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || die "process $pid died; log: $(tail -5 "$f")"
        sleep 0.1
    done
    die "timed out waiting for '$pat' in $f"
}

ensure_time() {
    [[ -x /usr/bin/time ]] && return 0
    log "installing the 'time' package (peak RSS)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
    }
}

# make_data DIR: a few files of different sizes, random, SIZE_MIB in total.
# Written once and kept (a .complete marker) so repeated runs skip it.
make_data() {
    local dir="$1/data"
    [[ -f "$1/.complete" ]] && return 0
    rm -rf "$1"
    mkdir -p "$dir/season1"
    local total=$((SIZE_MIB * 1024 * 1024))
    local odd=$((total >= 8 * 1024 * 1024 ? 1234567 : 0))
    local a=$((total * 55 / 100)) b=$((total / 4))
    local c=$((total - a - b - odd))
    log "writing ${SIZE_MIB} MiB of random data to $dir"
    head -c "$a" /dev/urandom > "$dir/season1/episode1.mkv"
    head -c "$b" /dev/urandom > "$dir/season1/episode2.mkv"
    head -c "$c" /dev/urandom > "$dir/extras.mp4"
    if ((odd > 0)); then head -c "$odd" /dev/urandom > "$dir/subtitles.srt"; fi
    touch "$1/.complete"
}

# verify OUT: every file of the data set exists under OUT/data (or OUT) and is
# identical; no file is missing. Returns non-zero with a reason on stdout.
verify() {
    local out="$1" root f
    if [[ -d "$out/data" ]]; then root="$out/data"; else root="$out"; fi
    while IFS= read -r f; do
        [[ -f "$root/$f" ]] || { echo "missing $f"; return 1; }
        cmp -s "$CACHE/data/$f" "$root/$f" || { echo "differs: $f"; return 1; }
    done < <(cd "$CACHE/data" && find . -type f | sed 's|^\./||')
}

# run_client NAME OUTDIR CMD...: time CMD (wall, peak RSS), verify OUTDIR,
# record a row. Never fails the script.
run_client() {
    local name="$1" out="$2"; shift 2
    local rss_file="$WORK/$name.rss" log_file="$WORK/$name.log"
    rm -rf "$out"; mkdir -p "$out"
    sync   # the previous client's dirty pages are not this one's cost
    log "$name: $*"
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    /usr/bin/time -f %M -o "$rss_file" timeout "$TIMEOUT" "$@" > "$log_file" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    local secs rss_kib rss_mib reason
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    rss_kib=$(grep -Eo '^[0-9]+$' "$rss_file" 2>/dev/null | tail -1 || true)
    rss_mib=$(awk -v k="${rss_kib:-0}" 'BEGIN { printf "%.0f", k / 1024 }')
    if ((rc != 0)); then
        reason="exit $rc"
        if ((rc == 124)); then reason+=" (timeout ${TIMEOUT}s)"; fi
        reason+=": $(tail -2 "$log_file" | tr '\n|' '  ' | cut -c1-160)"
        ROWS+=("$name|$secs||$rss_mib|FAIL|$reason")
    elif ! reason=$(verify "$out"); then
        ROWS+=("$name|$secs||$rss_mib|FAIL|$reason")
    else
        local mbps
        mbps=$(awk -v b="$((SIZE_MIB * 1024 * 1024))" -v s="$secs" 'BEGIN { printf "%.1f", b / 1e6 / s }')
        ROWS+=("$name|$secs|$mbps|$rss_mib|ok|")
    fi
    log "$name: ${ROWS[-1]}"
    rm -rf "$out"   # keep disk use at one copy of the data set
}

na_row() { ROWS+=("$1||||n/a|$2"); log "$1: n/a ($2)"; }

# find_rqbit: print the rqbit binary, installing it into RQBIT_ROOT if needed.
find_rqbit() {
    if command -v rqbit >/dev/null 2>&1; then command -v rqbit; return 0; fi
    if [[ -x "$RQBIT_ROOT/bin/rqbit" ]]; then echo "$RQBIT_ROOT/bin/rqbit"; return 0; fi
    [[ "${BENCH_RQBIT:-1}" == 0 ]] && return 1
    log "rqbit: cargo install rqbit --root $RQBIT_ROOT (one time, slow)"
    cargo install --locked rqbit --root "$RQBIT_ROOT" >"$WORK/rqbit-install.log" 2>&1 \
        || { log "rqbit install failed: $(tail -3 "$WORK/rqbit-install.log")"; return 1; }
    echo "$RQBIT_ROOT/bin/rqbit"
}

# rqbit_cmd BIN OUT SEEDPORT: print the rqbit command line (one arg per line),
# built from the flags its --help shows; fail if it cannot be kept on loopback.
rqbit_cmd() {
    local bin="$1" out="$2" port="$3" top sub
    top=$("$bin" --help 2>&1) || true
    sub=$("$bin" download --help 2>&1) || true
    local args=("$bin")
    # Isolation: no DHT, no UPnP; refuse to run otherwise.
    grep -Eq -- '--disable-dht([[:space:],=]|$)' <<<"$top" || { echo "no --disable-dht in rqbit --help"; return 1; }
    args+=(--disable-dht)
    grep -q -- '--disable-dht-persistence' <<<"$top" && args+=(--disable-dht-persistence)
    grep -q -- '--disable-upnp-port-forward' <<<"$top" && args+=(--disable-upnp-port-forward)
    grep -Eq -- '--disable-upnp([[:space:],=]|$)' <<<"$top" && args+=(--disable-upnp)
    grep -q -- '--disable-lsd' <<<"$top" && args+=(--disable-lsd)
    args+=(download)
    grep -q -- '--initial-peers' <<<"$sub" || { echo "no --initial-peers in rqbit download --help"; return 1; }
    args+=(--initial-peers "127.0.0.1:$port")
    if grep -q -- '--output-folder' <<<"$sub"; then args+=(--output-folder "$out"); else args+=(-o "$out"); fi
    grep -q -- '--exit-on-finish' <<<"$sub" || { echo "no --exit-on-finish in rqbit download --help"; return 1; }
    args+=(--exit-on-finish)
    grep -q -- '--disable-trackers' <<<"$sub" && args+=(--disable-trackers)
    args+=("$TORRENT")
    printf '%s\n' "${args[@]}"
}

# aggregate: one row per client from its runs: median seconds, max RSS; FAIL if any run failed.
aggregate() {
    local name row n secs mbps rss status note
    for name in peercdn peercdn-baseline libtorrent rqbit aria2c peercdn-utp libtorrent-utp; do
        local times=() worst_rss=0 fail="" na=""
        for row in "${ROWS[@]}"; do
            IFS='|' read -r n secs mbps rss status note <<<"$row"
            [[ "$n" == "$name" ]] || continue
            case "$status" in
                ok) times+=("$secs"); ((rss > worst_rss)) && worst_rss=$rss ;;
                FAIL) fail="$note"; worst_rss=${rss:-0} ;;
                *) na="$note" ;;
            esac
        done
        if [[ -n "$fail" ]]; then
            echo "$name||||FAIL|$fail"
        elif ((${#times[@]})); then
            local med
            med=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
            mbps=$(awk -v b="$((SIZE_MIB * 1024 * 1024))" -v s="$med" 'BEGIN { printf "%.1f", b / 1e6 / s }')
            echo "$name|$med|$mbps|$worst_rss|ok|runs: ${times[*]}"
        elif [[ -n "$na" ]]; then
            echo "$name||||n/a|$na"
        fi
    done
}

print_table() {
    local ref="" ref_utp="" row name secs mbps rss status note ratio r
    mapfile -t AGG < <(aggregate)
    for row in "${AGG[@]}"; do
        IFS='|' read -r name secs mbps rss status note <<<"$row"
        [[ "$name" == peercdn && "$status" == ok ]] && ref="$mbps"
        [[ "$name" == peercdn-utp && "$status" == ok ]] && ref_utp="$mbps"
    done
    echo
    echo "VoD download, ${SIZE_MIB} MiB in $(cd "$CACHE/data" && find . -type f | wc -l) files," \
        "one libtorrent seeder on 127.0.0.1, $(nproc) cores, $(date -u +%F), median of ${ROUNDS} rounds"
    echo
    echo "| client | seconds | MB/s | peak RSS MiB | peercdn speed ÷ this | runs (s) |"
    echo "| --- | ---: | ---: | ---: | ---: | --- |"
    local notes=()
    for row in "${AGG[@]}"; do
        IFS='|' read -r name secs mbps rss status note <<<"$row"
        case "$status" in
            ok)
                ratio="n/a"
                r="$ref"
                [[ "$name" == *-utp ]] && r="$ref_utp"
                if [[ -n "$r" ]]; then
                    ratio=$(awk -v p="$r" -v t="$mbps" 'BEGIN { printf "%.2f", p / t }')
                fi
                echo "| $name | $secs | $mbps | $rss | $ratio | ${note#runs: } |" ;;
            FAIL)
                echo "| $name | FAIL | FAIL | n/a | n/a | |"
                notes+=("- $name FAIL: $note") ;;
            *)
                echo "| $name | n/a | n/a | n/a | n/a | |"
                notes+=("- $name n/a: $note") ;;
        esac
    done
    if ((${#notes[@]})); then
        echo
        printf '%s\n' "${notes[@]}"
    fi
}

# ------------------------------------------------------------------ upload direction

# seeder_cpu PID: the process's user + system CPU seconds so far.
seeder_cpu() {
    awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# start_seeder KIND (libtorrent, peercdn or peercdn-baseline): one seeder over the complete
# data set; sets SEEDER_PID and SEEDER_PORT once it seeds.
start_seeder() {
    local kind="$1" log="$WORK/useed-$1.log"
    case "$kind" in
        libtorrent)
            rm -f "$WORK/useed.port"
            "$PY" "$LT_PEER" seed --torrent "$TORRENT" --save "$CACHE" --port-file "$WORK/useed.port" \
                --transport both >"$log" 2>&1 &
            SEEDER_PID=$!
            BG_PIDS+=("$SEEDER_PID")
            wait_file "$WORK/useed.port" 10
            wait_line "$log" '^DONE' 600 "$SEEDER_PID"
            SEEDER_PORT=$(cat "$WORK/useed.port") ;;
        peercdn|peercdn-baseline)
            local bin="$PEERCDN"
            [[ "$kind" == peercdn-baseline ]] && bin="$BASELINE"
            rm -rf "$WORK/useed-data"; mkdir -p "$WORK/useed-data"
            # The progress bar is hidden without a terminal: its `info` log says when it seeds.
            PEERCDN_LOG=info "$bin" get "$TORRENT" -o "$CACHE" --data-dir "$WORK/useed-data" \
                --port 0 --bind 127.0.0.1 --no-dht >"$log" 2>&1 &
            SEEDER_PID=$!
            BG_PIDS+=("$SEEDER_PID")
            wait_line "$log" '^port: ' 30 "$SEEDER_PID"
            wait_line "$log" 'download complete' 600 "$SEEDER_PID"
            SEEDER_PORT=$(grep -m1 '^port: ' "$log" | cut -d' ' -f2) ;;
    esac
    log "$kind seeder ready on 127.0.0.1:$SEEDER_PORT (pid $SEEDER_PID)"
}

stop_seeder() {
    kill "$SEEDER_PID" 2>/dev/null || true
    wait "$SEEDER_PID" 2>/dev/null || true
}

# up_client CLIENT SEEDER: CLIENT downloads from the running seeder; a row "CLIENT@SEEDER" and
# the seeder's CPU seconds for it.
up_client() {
    local client="$1" seeder="$2" name="$1@$2" out="$WORK/out-up" c0 c1
    c0=$(seeder_cpu "$SEEDER_PID")
    case "$client" in
        libtorrent)
            run_client "$name" "$out" "$PY" "$LT_PEER" leech --torrent "$TORRENT" --save "$out" \
                --peer "127.0.0.1:$SEEDER_PORT" --timeout "$TIMEOUT" ;;
        libtorrent-rc4)
            run_client "$name" "$out" "$PY" "$LT_PEER" leech --torrent "$TORRENT" --save "$out" \
                --peer "127.0.0.1:$SEEDER_PORT" --timeout "$TIMEOUT" --encryption forced ;;
        libtorrent-utp)
            run_client "$name" "$out" "$PY" "$LT_PEER" leech --torrent "$TORRENT" --save "$out" \
                --peer "127.0.0.1:$SEEDER_PORT" --timeout "$TIMEOUT" --transport utp ;;
        aria2c)
            command -v aria2c >/dev/null 2>&1 || { na_row "$name" "aria2c not installed"; return; }
            run_client "$name" "$out" aria2c --no-conf=true --interface=127.0.0.1 \
                --disable-ipv6=true --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
                --enable-peer-exchange=false --seed-time=0 --file-allocation=none \
                --summary-interval=0 --console-log-level=warn --dir="$out" "$TORRENT" ;;
        rqbit)
            local bin cmd
            if ! bin=$(find_rqbit); then na_row "$name" "no rqbit (BENCH_RQBIT=0 or install failed)"; return; fi
            if ! cmd=$(rqbit_cmd "$bin" "$out" "$SEEDER_PORT"); then na_row "$name" "$cmd"; return; fi
            mapfile -t rq <<<"$cmd"
            rm -rf "$WORK/rqbit-cache" "$WORK/rqbit-data" "$WORK/rqbit-config"
            run_client "$name" "$out" env XDG_CACHE_HOME="$WORK/rqbit-cache" \
                XDG_DATA_HOME="$WORK/rqbit-data" XDG_CONFIG_HOME="$WORK/rqbit-config" "${rq[@]}" ;;
    esac
    c1=$(seeder_cpu "$SEEDER_PID")
    CPU_ROWS+=("$name|$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')")
}

# median_row NAME: "median seconds|MB/s|median seeder CPU s per GB" of NAME's ok runs, or
# "FAIL|note" / "n/a|note".
median_row() {
    local name="$1" row n secs mbps rss status note times=() cpus=() fail="" na=""
    for row in "${ROWS[@]}"; do
        IFS='|' read -r n secs mbps rss status note <<<"$row"
        [[ "$n" == "$name" ]] || continue
        case "$status" in
            ok) times+=("$secs") ;;
            FAIL) fail="$note" ;;
            *) na="$note" ;;
        esac
    done
    for row in "${CPU_ROWS[@]}"; do
        [[ "${row%%|*}" == "$name" ]] && cpus+=("${row#*|}")
    done
    if [[ -n "$fail" ]]; then echo "FAIL|$fail"; return; fi
    if ((${#times[@]} == 0)); then echo "n/a|${na:-no run}"; return; fi
    local med cpu
    med=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    cpu=$(printf '%s\n' "${cpus[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    mbps=$(awk -v b="$((SIZE_MIB * 1024 * 1024))" -v s="$med" 'BEGIN { printf "%.1f", b / 1e6 / s }')
    cpu=$(awk -v c="$cpu" -v b="$((SIZE_MIB * 1024 * 1024))" 'BEGIN { printf "%.2f", c / (b / 1e9) }')
    echo "$med|$mbps|$cpu"
}

print_upload_table() {
    local client seeder cells row ref
    echo
    echo "VoD upload, ${SIZE_MIB} MiB, each client downloading from one seeder at a time on" \
        "127.0.0.1, $(nproc) cores, $(date -u +%F), median of ${ROUNDS} rounds;" \
        "CPU = the seeder's user + system seconds per GB uploaded"
    echo
    local head="| client | from libtorrent MB/s | from peercdn MB/s | peercdn ÷ libtorrent |"
    local sep="| --- | ---: | ---: | ---: |"
    if [[ -n "$BASELINE" ]]; then
        head+=" from peercdn-baseline MB/s |"; sep+=" ---: |"
    fi
    head+=" CPU s/GB libtorrent | CPU s/GB peercdn |"; sep+=" ---: | ---: |"
    echo "$head"; echo "$sep"
    local notes=()
    for client in "${UP_CLIENTS[@]}"; do
        local lt pc bl lt_m pc_m ratio line
        lt=$(median_row "$client@libtorrent"); pc=$(median_row "$client@peercdn")
        cell() { case "${1%%|*}" in FAIL|n/a) echo "${1%%|*}" ;; *) cut -d'|' -f2 <<<"$1" ;; esac; }
        cpu() { case "${1%%|*}" in FAIL|n/a) echo "n/a" ;; *) cut -d'|' -f3 <<<"$1" ;; esac; }
        lt_m=$(cell "$lt"); pc_m=$(cell "$pc")
        ratio="n/a"
        [[ "$lt_m" =~ ^[0-9.]+$ && "$pc_m" =~ ^[0-9.]+$ ]] \
            && ratio=$(awk -v p="$pc_m" -v l="$lt_m" 'BEGIN { printf "%.2f", p / l }')
        line="| $client | $lt_m | $pc_m | $ratio |"
        if [[ -n "$BASELINE" ]]; then
            bl=$(median_row "$client@peercdn-baseline"); line+=" $(cell "$bl") |"
        fi
        line+=" $(cpu "$lt") | $(cpu "$pc") |"
        echo "$line"
        for row in "$lt" "$pc"; do
            case "${row%%|*}" in FAIL|n/a) notes+=("- $client: ${row}") ;; esac
        done
    done
    if ((${#notes[@]})); then echo; printf '%s\n' "${notes[@]}"; fi
}

# ------------------------------------------------------------------ main

ensure_time
command -v aria2c >/dev/null 2>&1 || log "aria2c not installed (apt-get install aria2); its row will be n/a"
$PY -c 'import libtorrent' 2>/dev/null || die "/usr/bin/python3 cannot import libtorrent (apt-get install python3-libtorrent)"

# 1. peercdn release build (only the binary's crate graph).
PEERCDN_OK=1
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${PEERCDN_BIN:-}" ]]; then
    log "cargo build --release -p peercdn"
    if ! cargo build --release -p peercdn >"$WORK/build.log" 2>&1; then
        PEERCDN_OK=0
        log "peercdn build failed: $(grep -m3 -E '^error' "$WORK/build.log" || tail -3 "$WORK/build.log")"
    fi
fi
[[ -x "$PEERCDN" ]] || PEERCDN_OK=0

# 2. Data set (cached) and torrent (fresh: the tracker URL changes each run).
CACHE="$CACHE/${SIZE_MIB}mib"
make_data "$CACHE"

"$PY" "$TRACKER" --port-file "$WORK/tracker.port" >"$WORK/tracker.log" 2>&1 &
BG_PIDS+=($!)
wait_file "$WORK/tracker.port" 10
TRACKER_URL="http://127.0.0.1:$(cat "$WORK/tracker.port")/announce"

TORRENT="$WORK/bench.torrent"
create_args=(create --path "$CACHE/data" --out "$TORRENT" --tracker "$TRACKER_URL")
[[ -n "${BENCH_PIECE_SIZE:-}" ]] && create_args+=(--piece-size "$BENCH_PIECE_SIZE")
log "hashing the data set into a v1 torrent"
INFO_HASH=$("$PY" "$LT_PEER" "${create_args[@]}")
log "info hash $INFO_HASH, tracker $TRACKER_URL"

# 3. The one seeder (announces to the tracker, for aria2).
"$PY" "$LT_PEER" seed --torrent "$TORRENT" --save "$CACHE" --port-file "$WORK/seed.port" \
    --transport both >"$WORK/seed.log" 2>&1 &
SEED_PID=$!
BG_PIDS+=("$SEED_PID")
wait_file "$WORK/seed.port" 10
SEED_PORT=$(cat "$WORK/seed.port")
wait_line "$WORK/seed.log" '^DONE' 600 "$SEED_PID"
log "seeder ready on 127.0.0.1:$SEED_PORT"

# 4. The four downloads, one after another, in BENCH_ROUNDS rounds (the order rotates each
#    round, so no client is always first after the data set was written); the table gives the
#    median of each client's runs.
run_peercdn() {
    if ((PEERCDN_OK)); then
        rm -rf "$WORK/peercdn-data"; mkdir -p "$WORK/peercdn-data"
        run_client peercdn "$WORK/out-peercdn" "$PEERCDN" get "$TORRENT" -o "$WORK/out-peercdn" \
            --peer "127.0.0.1:$SEED_PORT" --no-seed --data-dir "$WORK/peercdn-data" --port 0 --bind 127.0.0.1 --no-dht
    else
        ROWS+=("peercdn||||FAIL|release build failed or no binary (see cargo build --release -p peercdn)")
    fi
}

run_peercdn-utp() {
    if ((PEERCDN_OK)); then
        rm -rf "$WORK/peercdn-data"; mkdir -p "$WORK/peercdn-data"
        run_client peercdn-utp "$WORK/out-peercdn" "$PEERCDN" get "$TORRENT" -o "$WORK/out-peercdn" \
            --peer "127.0.0.1:$SEED_PORT" --no-seed --data-dir "$WORK/peercdn-data" --port 0 \
            --bind 127.0.0.1 --no-dht --utp prefer
    else
        ROWS+=("peercdn-utp||||FAIL|release build failed or no binary")
    fi
}

run_libtorrent-utp() {
    run_client libtorrent-utp "$WORK/out-lt" "$PY" "$LT_PEER" leech --torrent "$TORRENT" \
        --save "$WORK/out-lt" --peer "127.0.0.1:$SEED_PORT" --timeout "$TIMEOUT" --transport utp
}

run_peercdn-baseline() {
    rm -rf "$WORK/baseline-data"; mkdir -p "$WORK/baseline-data"
    run_client peercdn-baseline "$WORK/out-baseline" "$BASELINE" get "$TORRENT" -o "$WORK/out-baseline" \
        --peer "127.0.0.1:$SEED_PORT" --no-seed --data-dir "$WORK/baseline-data" --port 0 --bind 127.0.0.1 --no-dht
}

run_libtorrent() {
    run_client libtorrent "$WORK/out-lt" "$PY" "$LT_PEER" leech --torrent "$TORRENT" \
        --save "$WORK/out-lt" --peer "127.0.0.1:$SEED_PORT" --timeout "$TIMEOUT"
}

run_rqbit() {
    if RQBIT_BIN=$(find_rqbit); then
        if cmd=$(rqbit_cmd "$RQBIT_BIN" "$WORK/out-rqbit" "$SEED_PORT"); then
            mapfile -t rq <<<"$cmd"
            # rqbit keeps state (session, DHT) under XDG dirs: point them at WORK.
            rm -rf "$WORK/rqbit-cache" "$WORK/rqbit-data" "$WORK/rqbit-config"
            run_client rqbit "$WORK/out-rqbit" env XDG_CACHE_HOME="$WORK/rqbit-cache" \
                XDG_DATA_HOME="$WORK/rqbit-data" XDG_CONFIG_HOME="$WORK/rqbit-config" "${rq[@]}"
        else
            na_row rqbit "$cmd"
        fi
    else
        na_row rqbit "not on PATH and cargo install rqbit failed or BENCH_RQBIT=0"
    fi
}

run_aria2c() {
    if command -v aria2c >/dev/null 2>&1; then
        run_client aria2c "$WORK/out-aria2" aria2c --no-conf=true --interface=127.0.0.1 \
            --disable-ipv6=true --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
            --enable-peer-exchange=false --seed-time=0 --file-allocation=none \
            --summary-interval=0 --console-log-level=warn --dir="$WORK/out-aria2" "$TORRENT"
    else
        na_row aria2c "aria2c not installed"
    fi
}

DIRECTION="${BENCH_DIRECTION:-both}"
ROUNDS="${BENCH_ROUNDS:-3}"
read -ra UP_CLIENTS <<<"${BENCH_UP_CLIENTS:-libtorrent libtorrent-rc4 libtorrent-utp aria2c rqbit}"
CPU_ROWS=()  # "client@seeder|seeder CPU seconds" (upload direction)
CLIENTS=(peercdn libtorrent rqbit aria2c peercdn-utp libtorrent-utp)
if [[ -n "$BASELINE" ]]; then
    [[ -x "$BASELINE" ]] || die "BENCH_BASELINE_BIN=$BASELINE is not an executable"
    CLIENTS=(peercdn peercdn-baseline libtorrent rqbit aria2c peercdn-utp libtorrent-utp)
fi
if [[ "$DIRECTION" != upload ]]; then
    for ((round = 0; round < ROUNDS; round++)); do
        log "download: round $((round + 1)) of $ROUNDS"
        for ((k = 0; k < ${#CLIENTS[@]}; k++)); do
            "run_${CLIENTS[(k + round) % ${#CLIENTS[@]}]}"
        done
    done
    print_table
fi

# 5. Upload: one seeder at a time (aria2c finds whichever is up through the tracker), every
#    client from each, the seeders' order rotating each round.
if [[ "$DIRECTION" != download ]]; then
    kill "$SEED_PID" 2>/dev/null || true
    wait "$SEED_PID" 2>/dev/null || true
    ((PEERCDN_OK)) || die "the upload direction needs a peercdn binary"
    SEEDERS=(libtorrent peercdn)
    [[ -n "$BASELINE" ]] && SEEDERS+=(peercdn-baseline)
    for ((round = 0; round < ROUNDS; round++)); do
        log "upload: round $((round + 1)) of $ROUNDS"
        for ((k = 0; k < ${#SEEDERS[@]}; k++)); do
            seeder="${SEEDERS[(k + round) % ${#SEEDERS[@]}]}"
            start_seeder "$seeder"
            for client in "${UP_CLIENTS[@]}"; do up_client "$client" "$seeder"; done
            stop_seeder
        done
    done
    print_upload_table
fi
