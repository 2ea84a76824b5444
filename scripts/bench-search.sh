#!/usr/bin/env bash
# Search benchmark, not a test: crates/engine/examples/bench_search.rs — real engine sessions
# in one process, real TCP on 127.0.0.1, real catalogues (tantivy) and pc_search between them —
# against a central index of every record built in the same run (the reference).
#
# Setup (defaults): 50 nodes; 10 small torrents (64 KiB), torrent t seeded by node t, every
# node in two of them (it dials three members of each; PEX does the rest): the connections
# pc_search runs on. 20 of the nodes publish 250 records each (5,000; titles of four words
# from a 400-word vocabulary, two tags, a category) over 10 s, then 20 s of gossip. Then 200
# queries, one at a time: two words of a random record's title, on a random honest node.
# Then the same again with 30 % of the nodes replaced by liars (the example's liars.rs):
# a third answer every query with forged records, a third take queries and never answer, a
# third flood (ten queries a second, 50 pushed records a second under their own key, and
# answers made up for each query, validly signed by a key all flooders share). Honest nodes
# each sit in their own /24 network (127.x.y.1); the liars share three.
#
# Columns:
#   held        records in a node's catalogue when the queries start: mean (min)
#   liars       nodes that lie (of `nodes`)
#   recall@10   relevant: the central index's records holding every word of the query, best
#               first, at most 10; recall is the share of them in the node's top 10 —
#               first: its own catalogue at once; final: after asking its peers (one hop,
#               1 s budget; the ask ends when every asked peer said done, or 200 ms after
#               three quarters did)
#   R-prec      final: the share of the node's first |relevant| results that are relevant
#               (spam ranked above an honest match lowers it)
#   forged      results shown whose signature does not verify (all queries)
#   spam        share of all results shown that a liar's key signed
#   first ms    p50 / p95 of the local search
#   final ms    p50 / p95 of local search + ask + search again (the ask waits at least 50 ms
#               for the swarms to claim peers)
#   asked       peers asked per query (mean)
#   B/query     query and result bytes all nodes sent during the queries, per query
#   gossip KiB  pc_search bytes sent per node before the queries (samples and pushes)
#
# Environment: BENCH_NODES (50), BENCH_SWARMS (10), BENCH_PUBLISHERS (20), BENCH_RECORDS
# (5000), BENCH_QUERIES (200), BENCH_PUBLISH_S (10), BENCH_SETTLE_S (20), BENCH_SEED (1),
# BENCH_LIARS ("0 30": the runs' percentages of liars),
# BENCH_SKIP_BUILD=1 (use the existing release build).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release --locked -p peercdn-engine --example bench_search >&2
fi
BIN="$REPO_ROOT/target/release/examples/bench_search"

echo "| nodes | liars | records | publishers | held mean (min) | recall@10 first | recall@10 final | first ms p50 / p95 | final ms p50 / p95 | asked | B/query | gossip KiB/node | R-prec | forged | spam |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for liars in ${BENCH_LIARS:-0 30}; do
    "$BIN" \
        --nodes "${BENCH_NODES:-50}" \
        --liars "$liars" \
        --swarms "${BENCH_SWARMS:-10}" \
        --publishers "${BENCH_PUBLISHERS:-20}" \
        --records "${BENCH_RECORDS:-5000}" \
        --queries "${BENCH_QUERIES:-200}" \
        --publish-s "${BENCH_PUBLISH_S:-10}" \
        --settle-s "${BENCH_SETTLE_S:-20}" \
        --seed "${BENCH_SEED:-1}"
done
echo
echo "Goals (issue 13): final p95 <= 1000 ms; recall@10 >= 0.9 honest, >= 0.8 with 30 % liars;"
echo "no forged record ever shown."
