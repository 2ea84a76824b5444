#!/usr/bin/env bash
# Self-test of tests/interop/lt_peer.py (libtorrent peer) and tracker.py.
# Not run by scripts/test.sh; run it by hand after editing those scripts:
#
#   bash tests/interop/selftest.sh            # 20 MiB data set
#   SELFTEST_MIB=200 bash tests/interop/selftest.sh
#
# Checks, all on 127.0.0.1:
#   1. create: a v1-only multi-file torrent, info hash printed;
#   2. seed -> leech via --peer: files identical (cmp), speed printed;
#   3. corrupt + two partial seeders (even / odd pieces) -> leech from both:
#      identical, and both partial seeders complete themselves;
#   4. --upload-limit is honoured on loopback (roughly);
#   5. leech with no peers and --timeout 2 exits 3; SIGTERM makes seed exit 0;
#   6. tracker.py: a seeder announcing with the torrent's tracker URL is found
#      by a leecher that has no --peer (libtorrent as the tracker client).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3
LT="$HERE/lt_peer.py"
MIB="${SELFTEST_MIB:-20}"
WORK="$(mktemp -d /tmp/lt-selftest.XXXXXX)"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "SELFTEST FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# wait_port FILE -> prints the port once FILE exists (10 s max).
wait_port() {
    local f="$1" i
    for i in $(seq 100); do
        if [[ -s "$f" ]]; then cat "$f"; return 0; fi
        sleep 0.1
    done
    fail "no port file $f"
}

# same_tree A B: every file identical (cmp), same file list.
same_tree() {
    local a="$1" b="$2" f
    diff <(cd "$a" && find . -type f | sort) <(cd "$b" && find . -type f | sort) >/dev/null \
        || fail "file lists differ: $a $b"
    while IFS= read -r f; do
        cmp -s "$a/$f" "$b/$f" || fail "$b/$f differs"
    done < <(cd "$a" && find . -type f)
}

# now_s: wall clock with ms resolution.
now_s() { date +%s.%N; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }

# ---------------------------------------------------------------- data set
echo "== data: ${MIB} MiB in 3 files under $WORK"
mkdir -p "$WORK/src/data/sub"
BYTES=$((MIB * 1024 * 1024))
A=$((BYTES / 2)); B=$((BYTES / 3)); C=$((BYTES - A - B))
head -c "$A" /dev/urandom > "$WORK/src/data/a.bin"
head -c "$B" /dev/urandom > "$WORK/src/data/sub/b.bin"
head -c "$C" /dev/urandom > "$WORK/src/data/c.txt"

# ---------------------------------------------------------------- 1. create
HASH=$("$PY" "$LT" create --path "$WORK/src/data" --out "$WORK/t.torrent")
[[ "$HASH" =~ ^[0-9a-f]{40}$ ]] || fail "create printed '$HASH'"
ok "create -> $HASH"

# ---------------------------------------------------------------- 2. seed -> leech
"$PY" "$LT" seed --torrent "$WORK/t.torrent" --save "$WORK/src" \
    --port-file "$WORK/seed.port" > "$WORK/seed.log" 2>&1 &
SEED=$!; PIDS+=("$SEED")
SEED_PORT=$(wait_port "$WORK/seed.port")
t0=$(now_s)
"$PY" "$LT" leech --torrent "$WORK/t.torrent" --save "$WORK/dl1" \
    --peer "127.0.0.1:$SEED_PORT" --timeout 120 > "$WORK/dl1.log" 2>&1 || fail "leech: $(tail -3 "$WORK/dl1.log")"
t1=$(now_s)
same_tree "$WORK/src" "$WORK/dl1"
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
ok "seed -> leech: identical; process wall ${secs} s = $(rate "$BYTES" "$secs") MB/s; $(grep SUMMARY "$WORK/dl1.log")"

# ---------------------------------------------------------------- 3. partial seeders
cp -r "$WORK/src" "$WORK/p1"
cp -r "$WORK/src" "$WORK/p2"
"$PY" "$LT" corrupt --torrent "$WORK/t.torrent" --save "$WORK/p1" --keep even
"$PY" "$LT" seed --torrent "$WORK/t.torrent" --save "$WORK/p1" \
    --port-file "$WORK/p1.port" > "$WORK/p1.log" 2>&1 &
P1=$!; PIDS+=("$P1")
"$PY" "$LT" seed --torrent "$WORK/t.torrent" --save "$WORK/p2" --pieces odd \
    --port-file "$WORK/p2.port" > "$WORK/p2.log" 2>&1 &
P2=$!; PIDS+=("$P2")
P1_PORT=$(wait_port "$WORK/p1.port"); P2_PORT=$(wait_port "$WORK/p2.port")
# Both must stop short of 1.0 after their check (they own half each).
sleep 1
grep -q DONE "$WORK/p1.log" && fail "partial seeder p1 claims completion before any peer"
grep -q DONE "$WORK/p2.log" && fail "partial seeder p2 claims completion before any peer"
t0=$(now_s)
"$PY" "$LT" leech --torrent "$WORK/t.torrent" --save "$WORK/dl2" \
    --peer "127.0.0.1:$P1_PORT" --peer "127.0.0.1:$P2_PORT" --timeout 120 \
    > "$WORK/dl2.log" 2>&1 || fail "leech from partials: $(tail -3 "$WORK/dl2.log")"
t1=$(now_s)
same_tree "$WORK/src" "$WORK/dl2"
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
ok "two partial seeders (even/odd) -> leech: identical; wall ${secs} s = $(rate "$BYTES" "$secs") MB/s"
for i in $(seq 100); do
    grep -q DONE "$WORK/p1.log" && grep -q DONE "$WORK/p2.log" && break
    sleep 0.1
done
grep -q DONE "$WORK/p1.log" && grep -q DONE "$WORK/p2.log" || fail "partial seeders did not complete"
kill "$P1" "$P2"
wait "$P1" || fail "p1 exit $? on SIGTERM"
wait "$P2" || fail "p2 exit $? on SIGTERM"
same_tree "$WORK/src" "$WORK/p1"
same_tree "$WORK/src" "$WORK/p2"
ok "partial seeders completed each other; SIGTERM -> exit 0"

# ---------------------------------------------------------------- 4. upload limit
LIMIT=$((4 * 1024 * 1024))
"$PY" "$LT" seed --torrent "$WORK/t.torrent" --save "$WORK/src" --upload-limit "$LIMIT" \
    --port-file "$WORK/slow.port" > "$WORK/slow.log" 2>&1 &
SLOW=$!; PIDS+=("$SLOW")
SLOW_PORT=$(wait_port "$WORK/slow.port")
t0=$(now_s)
"$PY" "$LT" leech --torrent "$WORK/t.torrent" --save "$WORK/dl3" \
    --peer "127.0.0.1:$SLOW_PORT" --timeout 120 > "$WORK/dl3.log" 2>&1 || fail "leech (limited)"
t1=$(now_s)
same_tree "$WORK/src" "$WORK/dl3"
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
mbps=$(rate "$BYTES" "$secs")
awk -v r="$mbps" -v l="$LIMIT" 'BEGIN { exit !(r * 1e6 < l * 1.5) }' \
    || fail "--upload-limit $LIMIT not honoured: $mbps MB/s"
ok "--upload-limit $LIMIT B/s: $mbps MB/s"
kill "$SLOW"; wait "$SLOW" || true

# ---------------------------------------------------------------- 5. timeout
set +e
"$PY" "$LT" leech --torrent "$WORK/t.torrent" --save "$WORK/dl4" --timeout 2 > /dev/null 2>&1
rc=$?
set -e
[[ $rc -eq 3 ]] || fail "leech --timeout with no peers exited $rc, want 3"
ok "--timeout -> exit 3"

# ---------------------------------------------------------------- 6. tracker
"$PY" "$HERE/tracker.py" --port-file "$WORK/tracker.port" > "$WORK/tracker.log" 2>&1 &
TR=$!; PIDS+=("$TR")
TR_PORT=$(wait_port "$WORK/tracker.port")
"$PY" "$LT" create --path "$WORK/src/data" --out "$WORK/tr.torrent" \
    --tracker "http://127.0.0.1:$TR_PORT/announce" > /dev/null
"$PY" "$LT" seed --torrent "$WORK/tr.torrent" --save "$WORK/src" \
    --port-file "$WORK/trs.port" > "$WORK/trs.log" 2>&1 &
TRS=$!; PIDS+=("$TRS")
wait_port "$WORK/trs.port" > /dev/null
"$PY" "$LT" leech --torrent "$WORK/tr.torrent" --save "$WORK/dl5" --timeout 60 \
    > "$WORK/dl5.log" 2>&1 || fail "leech via tracker: $(tail -3 "$WORK/dl5.log") / $(tail -3 "$WORK/tracker.log")"
same_tree "$WORK/src" "$WORK/dl5"
ok "leech found the seeder through tracker.py"

echo "SELFTEST PASS"
