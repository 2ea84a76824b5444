//! The search benchmark (not a test; `scripts/bench-search.sh` runs it and explains the
//! table): real engine sessions in one process, real TCP on 127.0.0.1, real catalogues and
//! `pc_search` between them; the reference is a central index of every record, in the same
//! run.
//!
//! Setup: `--nodes` sessions; `--swarms` small torrents (64 KiB each), torrent `t` seeded by
//! node `t`, every node in two of them (dialling three nodes already in each; PEX does the
//! rest): the connections `pc_search` runs on. The first `--publishers` nodes each sign
//! `--records / --publishers` records (titles of four words from a 400-word vocabulary, two
//! tags), published over `--publish-s` seconds. After `--settle-s` seconds of gossip, `--queries`
//! queries (two words of a random record's title, on a random node, one at a time): the local
//! catalogue's top 10 at once ("first"), then again after asking the peers (one hop, 1 s budget:
//! "final"). Relevant: the records of the central index that hold every word of the query
//! (title or tags), best first, at most 10; recall@10 = the share of them in the node's top 10;
//! R-precision = the share of the node's first |relevant| results that are relevant (a spam
//! record ranked above an honest match lowers it).
//!
//! With `--liars PCT`, that share of the nodes are liars instead ([`liars`]: forged answers,
//! dropped queries, floods); queries are asked on honest nodes only, and every shown result is
//! checked: a record whose signature does not verify counts as forged shown, one of a liar's
//! keys as spam shown.
//!
//! Addresses: honest node `i` listens (and dials from) 127.(1 + i / 250).(i % 250).1, its own
//! /24 network; the liars share three.
//!
//! Prints one markdown table row and, with `--json FILE`, the figures as JSON.

mod liars;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use peercdn_core::catalog::{Description, Kind};
use peercdn_core::metainfo::Metainfo;
use peercdn_core::InfoHash;
use peercdn_engine::catalog::{Catalog, Origin, SearchQuery};
use peercdn_engine::create::{build_info, CreateOptions};
use peercdn_engine::session::{AddOptions, Session, SessionConfig};
use peercdn_engine::torrent::Source;

struct Opts {
    nodes: usize,
    swarms: usize,
    publishers: usize,
    records: usize,
    queries: usize,
    publish_s: u64,
    settle_s: u64,
    seed: u64,
    liars: usize,
    json: Option<String>,
}

fn opts() -> Opts {
    let mut o = Opts {
        nodes: 50,
        swarms: 10,
        publishers: 20,
        records: 5000,
        queries: 200,
        publish_s: 10,
        settle_s: 20,
        seed: 1,
        liars: 0,
        json: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        let n = || {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{}: not a number", args[i]))
        };
        match args[i].as_str() {
            "--nodes" => o.nodes = n() as usize,
            "--swarms" => o.swarms = n() as usize,
            "--publishers" => o.publishers = n() as usize,
            "--records" => o.records = n() as usize,
            "--queries" => o.queries = n() as usize,
            "--publish-s" => o.publish_s = n(),
            "--settle-s" => o.settle_s = n(),
            "--seed" => o.seed = n(),
            "--liars" => o.liars = n() as usize,
            "--json" => o.json = Some(v.clone()),
            a => panic!("unknown flag {a}"),
        }
        i += 2;
    }
    assert!(
        o.liars <= 90,
        "--liars is a percentage of the nodes (at most 90)"
    );
    let liars = o.nodes * o.liars / 100;
    assert!(o.publishers + liars <= o.nodes && o.swarms + liars <= o.nodes && o.swarms >= 2);
    o
}

/// splitmix64: deterministic choices from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A pronounceable word for vocabulary index `i` (distinct for i < 400).
pub(crate) fn word(i: usize) -> String {
    const C: &[u8] = b"bdfgklmnprstvz";
    const V: &[u8] = b"aeiou";
    let s = [
        C[i % C.len()],
        V[(i / C.len()) % V.len()],
        C[(i / (C.len() * V.len())) % C.len()],
        V[(i / 7) % V.len()],
    ];
    String::from_utf8_lossy(&s).into_owned()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Honest node `i`'s address: a /24 network of its own.
fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1 + (i / 250) as u8, (i % 250) as u8, 1)
}

async fn start(dir: &Path, i: usize) -> Session {
    let data = dir.join(format!("node{i}"));
    std::fs::create_dir_all(&data).expect("mkdir");
    Session::start(SessionConfig {
        download_dir: data.join("dl"),
        data_dir: data,
        listen: SocketAddr::from((node_ip(i), 0)),
        static_peers: Vec::new(),
        upload_limit: 0,
        download_limit: 0,
        dht: None,
        receipt_interval: peercdn_engine::receipts::DEFAULT_INTERVAL,
        encryption: Default::default(),
        utp: Default::default(),
        dht_port: None,
    })
    .await
    .expect("session")
}

#[allow(clippy::disallowed_methods)] // a benchmark: a real clock to time the queries
#[tokio::main]
async fn main() {
    let o = opts();
    let mut rng = Rng(o.seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let liar_count = o.nodes * o.liars / 100;
    let honest = o.nodes - liar_count;
    eprintln!("starting {honest} nodes ({liar_count} liars)");
    let mut nodes = Vec::with_capacity(honest);
    for i in 0..honest {
        nodes.push(start(dir, i).await);
    }
    let addr = |i: usize| SocketAddr::from((node_ip(i), nodes[i].listen_port()));

    // The swarms: torrent t seeded by node t; every node joins two.
    let mut torrents = Vec::new();
    for t in 0..o.swarms {
        let content = dir.join(format!("node{t}")).join(format!("swarm{t}"));
        std::fs::write(&content, vec![t as u8; 64 * 1024]).expect("content");
        let info = build_info(
            &content,
            &CreateOptions {
                piece_length: None,
                private: false,
            },
            &mut |_, _| {},
        )
        .expect("info");
        torrents.push(Metainfo::new(info, Vec::new(), Vec::new(), None, None));
    }
    let mut members: Vec<Vec<usize>> = (0..o.swarms).map(|t| vec![t]).collect();
    for (t, m) in torrents.iter().enumerate() {
        nodes[t].add(
            Source::Metainfo(Box::new(m.clone())),
            AddOptions {
                save_dir: Some(dir.join(format!("node{t}"))),
                ..Default::default()
            },
        );
    }
    for (i, node) in nodes.iter().enumerate() {
        let a = rng.below(o.swarms);
        let b = (a + 1 + rng.below(o.swarms - 1)) % o.swarms;
        for t in [a, b] {
            if members[t].contains(&i) {
                continue;
            }
            let peers: Vec<SocketAddr> = (0..3)
                .map(|_| addr(members[t][rng.below(members[t].len())]))
                .collect();
            node.add(
                Source::Metainfo(Box::new(torrents[t].clone())),
                AddOptions {
                    peers,
                    ..Default::default()
                },
            );
            members[t].push(i);
        }
    }

    // The liars join two swarms each, dialling three members of each.
    let liar_stats = Arc::new(liars::LiarStats::default());
    let mut liar_keys = vec![liars::answer_key(o.seed).verifying_key().to_bytes()];
    let mut liar_tasks = Vec::new();
    for n in 0..liar_count {
        let liar = Arc::new(liars::Liar::new(n, o.seed));
        liar_keys.push(liar.key.verifying_key().to_bytes());
        let a = rng.below(o.swarms);
        let b = (a + 1 + rng.below(o.swarms - 1)) % o.swarms;
        for t in [a, b] {
            for _ in 0..3 {
                let to = addr(members[t][rng.below(members[t].len())]);
                let ih = torrents[t].info_hash;
                liar_tasks.push(tokio::spawn(liars::run(
                    liar.clone(),
                    to,
                    ih,
                    o.seed,
                    liar_stats.clone(),
                )));
            }
        }
    }

    // The records, and the central index of all of them.
    let central = Catalog::open(None, peercdn_engine::clock::unix_secs()).expect("catalog");
    let per = o.records / o.publishers.max(1);
    let mut titles: Vec<(InfoHash, String)> = Vec::with_capacity(o.records);
    let pace = Duration::from_millis(o.publish_s * 1000 / per.max(1) as u64);
    eprintln!(
        "publishing {} records from {} publishers",
        per * o.publishers,
        o.publishers
    );
    for k in 0..per {
        for node in nodes.iter().take(o.publishers) {
            let mut id = [0u8; 20];
            for b in id.chunks_mut(8) {
                let r = rng.next().to_le_bytes();
                b.copy_from_slice(&r[..b.len()]);
            }
            let id = InfoHash(id);
            let title: Vec<String> = (0..4).map(|_| word(rng.below(400))).collect();
            let desc = Description {
                title: title.join(" "),
                tags: (0..2).map(|_| word(rng.below(400))).collect(),
                category: ["news", "sport", "movies", "music"][rng.below(4)].into(),
                ..Default::default()
            };
            let r = node.publish_record(id, Kind::Vod, desc).expect("record");
            let now = peercdn_engine::clock::unix_secs();
            central.insert(r, Origin::Peer, now).expect("central");
            titles.push((id, title.join(" ")));
        }
        if k % 25 == 0 {
            eprint!("\r{} records", (k + 1) * o.publishers);
        }
        tokio::time::sleep(pace).await;
    }
    eprintln!("\rsettling {} s", o.settle_s);
    tokio::time::sleep(Duration::from_secs(o.settle_s)).await;
    let held: Vec<f64> = nodes.iter().map(|n| n.catalog().len() as f64).collect();
    let held_mean = held.iter().sum::<f64>() / held.len() as f64;
    let before: Vec<_> = nodes.iter().map(|n| n.search_stats()).collect();

    // The queries.
    let mut first_ms = Vec::new();
    let mut final_ms = Vec::new();
    let mut recall_first = Vec::new();
    let mut recall_final = Vec::new();
    let mut asked = Vec::new();
    let mut precision_r = Vec::new();
    let (mut shown, mut forged_shown, mut spam_shown) = (0u64, 0u64, 0u64);
    let now = peercdn_engine::clock::unix_secs();
    for qn in 0..o.queries {
        let (_, title) = &titles[rng.below(titles.len())];
        let words: Vec<&str> = title.split(' ').collect();
        let a = rng.below(words.len());
        let b = (a + 1 + rng.below(words.len() - 1)) % words.len();
        let q = SearchQuery {
            text: format!("{} {}", words[a], words[b]),
            limit: 10,
            ..Default::default()
        };
        // Relevant: the central index's records that hold every word of the query (in the
        // title or the tags), best first, at most 10.
        let all = SearchQuery {
            limit: 1000,
            ..q.clone()
        };
        let want: Vec<InfoHash> = central
            .search(&all, now)
            .hits
            .iter()
            .filter(|h| {
                let r = &h.entry.record.desc;
                let words: Vec<&str> = r
                    .title
                    .split(' ')
                    .chain(r.tags.iter().map(String::as_str))
                    .collect();
                q.text.split(' ').all(|w| words.contains(&w))
            })
            .take(10)
            .map(|h| h.entry.record.id)
            .collect();
        let node = &nodes[rng.below(nodes.len())];
        let t0 = std::time::Instant::now();
        let got1 = node.catalog().search(&q, now);
        first_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let a1 = node.ask_peers(&q, Duration::from_secs(1)).await;
        let got2 = node.catalog().search(&q, now);
        final_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        asked.push(a1.peers as f64);
        let share = |got: &peercdn_engine::catalog::Results| {
            if want.is_empty() {
                return 1.0;
            }
            let ids: Vec<InfoHash> = got.hits.iter().map(|h| h.entry.record.id).collect();
            want.iter().filter(|w| ids.contains(w)).count() as f64 / want.len() as f64
        };
        recall_first.push(share(&got1));
        recall_final.push(share(&got2));
        if !want.is_empty() {
            let top = got2.hits.iter().take(want.len());
            let on_top = top.filter(|h| want.contains(&h.entry.record.id)).count();
            precision_r.push(on_top as f64 / want.len() as f64);
        }
        for h in &got2.hits {
            shown += 1;
            if h.entry.record.verify().is_err() {
                forged_shown += 1;
            }
            if liar_keys.contains(&h.entry.record.publisher) {
                spam_shown += 1;
            }
        }
        if qn % 20 == 0 {
            eprint!("\r{qn} queries");
        }
    }
    eprintln!();
    let after: Vec<_> = nodes.iter().map(|n| n.search_stats()).collect();
    let bytes_q: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.query_bytes_out - b.query_bytes_out)
        .sum();
    let gossip_bytes: u64 = before.iter().map(|s| s.bytes_out).sum();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let r = serde_json::json!({
        "nodes": o.nodes,
        "swarms": o.swarms,
        "publishers": o.publishers,
        "records": per * o.publishers,
        "queries": o.queries,
        "settle_s": o.settle_s,
        "held_mean": held_mean,
        "held_min": held.iter().cloned().fold(f64::INFINITY, f64::min),
        "recall10_first": mean(&recall_first),
        "recall10_final": mean(&recall_final),
        "first_p50_ms": pct(&mut first_ms.clone(), 0.5),
        "first_p95_ms": pct(&mut first_ms, 0.95),
        "final_p50_ms": pct(&mut final_ms.clone(), 0.5),
        "final_p95_ms": pct(&mut final_ms, 0.95),
        "peers_asked_mean": mean(&asked),
        "bytes_per_query": bytes_q as f64 / o.queries.max(1) as f64,
        "gossip_kib_per_node": gossip_bytes as f64 / 1024.0 / honest as f64,
        "r_precision_final": mean(&precision_r),
        "liars": liar_count,
        "forged_shown": forged_shown,
        "spam_shown_share": spam_shown as f64 / shown.max(1) as f64,
        "liar_connections": liar_stats.connected.load(Ordering::Relaxed),
        "liar_queries_received": liar_stats.queries.load(Ordering::Relaxed),
        "liar_records_answered": liar_stats.answered.load(Ordering::Relaxed),
        "liar_records_pushed": liar_stats.pushed.load(Ordering::Relaxed),
        "liar_queries_sent": liar_stats.asked.load(Ordering::Relaxed),
    });
    eprintln!(
        "liars: {} connections, {} queries received, {} records answered, {} pushed, {} queries sent",
        r["liar_connections"], r["liar_queries_received"], r["liar_records_answered"],
        r["liar_records_pushed"], r["liar_queries_sent"]
    );
    println!(
        "| {} | {} | {} | {} | {:.0} ({:.0}) | {:.3} | {:.3} | {:.1} / {:.1} | {:.0} / {:.0} | {:.1} | {:.0} | {:.0} | {:.3} | {} | {:.3} |",
        o.nodes,
        liar_count,
        per * o.publishers,
        o.publishers,
        held_mean,
        r["held_min"].as_f64().unwrap_or(0.0),
        r["recall10_first"].as_f64().unwrap_or(0.0),
        r["recall10_final"].as_f64().unwrap_or(0.0),
        r["first_p50_ms"].as_f64().unwrap_or(0.0),
        r["first_p95_ms"].as_f64().unwrap_or(0.0),
        r["final_p50_ms"].as_f64().unwrap_or(0.0),
        r["final_p95_ms"].as_f64().unwrap_or(0.0),
        r["peers_asked_mean"].as_f64().unwrap_or(0.0),
        r["bytes_per_query"].as_f64().unwrap_or(0.0),
        r["gossip_kib_per_node"].as_f64().unwrap_or(0.0),
        r["r_precision_final"].as_f64().unwrap_or(0.0),
        forged_shown,
        r["spam_shown_share"].as_f64().unwrap_or(0.0),
    );
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&r).expect("json")).expect("write json");
    }
    for t in liar_tasks {
        t.abort();
    }
    for n in nodes {
        n.shutdown().await;
    }
}
