//! `/metrics` in the Prometheus text exposition format (version 0.0.4), named as Prometheus
//! wants (base units, counters ending in `_total`, rates left to `rate()`), one label `id` for
//! the content ID everywhere: the number of torrents and, per torrent (labels `id` and `name`),
//! bytes moved, peers and progress; the number of live streams and, per stream, bytes
//! downloaded by origin (`origin="p2p|cdn"`), uploaded, peers, readers, delay (of the newest
//! piece, and the largest of this engine's players), CDN pieces and failures and banned peers;
//! the DHT (`peercdn_dht_enabled`, then, when it runs, `peercdn_dht_nodes`,
//! `peercdn_dht_bootstrapped`, `peercdn_dht_lookups_total`, `peercdn_dht_lookups_done_total`,
//! `peercdn_dht_peers_found_total`, `peercdn_dht_announces_total`,
//! `peercdn_dht_announce_failures_total`; no malformed-packet series: the DHT crate keeps no
//! such counter); the connections the swarms closed, by reason, all swarms together
//! (`peercdn_peer_disconnects_total{reason="idle|bad_piece|…"}`, every reason listed) and the
//! peer connections open by encryption
//! (`peercdn_peer_connections{encryption="plain|obfuscated|rc4"}`); the HTTP
//! connections and the media requests answered, by kind and status class
//! (`peercdn_http_media_requests_total{kind="getstream|playlist|live_segment|vod_segment|
//! player_page",status="2xx|3xx|4xx|5xx"}`, counted by [`count_media`]);
//! `peercdn_build_info{version}` and the process (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, …, from `/proc/self` by the `procfs`
//! crate). `promtool check metrics` passes it (tested). No per-peer labels.

use std::fmt::Write;

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use peercdn_core::DisconnectCounts;
use peercdn_engine::dht::DhtStats;
use peercdn_engine::peer::Wires;

use crate::state::AppState;

/// Renders the metrics of every running torrent.
pub async fn handler(State(state): State<AppState>) -> Response {
    let mut hs = state.session().list();
    hs.sort_by_key(|h| h.info_hash);
    let rows: Vec<Row> = hs
        .iter()
        .map(|h| {
            let st = h.status.borrow();
            Row {
                id: h.info_hash.to_hex(),
                name: st.name.clone().unwrap_or_default(),
                downloaded: st.downloaded,
                p2p: st.p2p_downloaded,
                http: st.http_downloaded,
                uploaded: st.uploaded,
                peers: st.peers as u64,
                progress: st.progress(),
            }
        })
        .collect();
    let mut disconnects = DisconnectCounts::default();
    let mut wires = Wires::default();
    for h in &hs {
        disconnects.merge(&h.status.borrow().disconnects);
        wires.merge(&h.status.borrow().wires);
    }
    let mut lives = state.session().lives();
    lives.sort_by_key(|h| h.content_id());
    let now = peercdn_engine::live::now_us();
    let live_rows: Vec<LiveRow> = lives
        .iter()
        .map(|h| {
            let st = h.status();
            disconnects.merge(&st.disconnects);
            wires.merge(&st.wires);
            LiveRow {
                id: h.content_id().to_hex(),
                name: st.name.unwrap_or_default(),
                p2p: st.p2p_downloaded,
                cdn: st.cdn_downloaded,
                uploaded: st.uploaded,
                peers: st.peers as u64,
                readers: st.readers as u64,
                delay_s: st.delay_ms.map(|ms| ms as f64 / 1000.0),
                player_delay_s: state.max_player_delay(&h.content_id(), now),
                banned: st.banned,
                cdn_pieces: st.cdn_pieces,
                cdn_failures: st.cdn_failures,
            }
        })
        .collect();
    let dht = match state.session().dht() {
        Some(d) => Some(d.current_stats().await),
        None => None,
    };
    let mut text = render(&rows);
    render_live(&mut text, &live_rows);
    render_dht(&mut text, dht.as_ref());
    render_disconnects(&mut text, &disconnects);
    render_wires(&mut text, &wires);
    let conns = state.connections();
    text.push_str(&format!(
        "# HELP peercdn_http_connections HTTP connections open.\n\
         # TYPE peercdn_http_connections gauge\n\
         peercdn_http_connections {}\n\
         # HELP peercdn_http_connections_max Most HTTP connections at once.\n\
         # TYPE peercdn_http_connections_max gauge\n\
         peercdn_http_connections_max {}\n",
        conns.open(),
        conns.max()
    ));
    render_media(&mut text, state.media_requests());
    crate::ledger::render(&mut text, &state.session().accounts().stats);
    render_build_and_process(&mut text);
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Kinds of media request counted (the label values, in order).
const MEDIA_KINDS: [&str; 5] = [
    "getstream",
    "playlist",
    "live_segment",
    "vod_segment",
    "player_page",
];
/// Status classes counted.
const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Media requests answered, by kind and status class.
#[derive(Debug, Default)]
pub struct MediaRequests([[AtomicU64; 4]; 5]);

impl MediaRequests {
    fn add(&self, kind: usize, status: u16) {
        let class = usize::from(status / 100).clamp(2, 5) - 2;
        self.0[kind][class].fetch_add(1, Ordering::Relaxed);
    }
}

/// The kind of media request `path` is, as an index into [`MEDIA_KINDS`].
fn media_kind(path: &str) -> Option<usize> {
    if path == "/ace/getstream" || path.starts_with("/ace/r/") {
        Some(0)
    } else if path.ends_with(".m3u8") {
        Some(1)
    } else if path.starts_with("/ace/l/") {
        Some(2)
    } else if path.starts_with("/ace/v/") {
        Some(3)
    } else if path.starts_with("/play/") {
        Some(4)
    } else {
        None
    }
}

/// Middleware: counts the media requests answered (the status a client got; a stream that
/// fails later in its body still counts as answered).
pub async fn count_media(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let kind = media_kind(request.uri().path());
    let r = next.run(request).await;
    if let Some(k) = kind {
        state.media_requests().add(k, r.status().as_u16());
    }
    r
}

fn render_media(out: &mut String, m: &MediaRequests) {
    let name = "peercdn_http_media_requests_total";
    let _ = writeln!(
        out,
        "# HELP {name} Media requests answered (getstream, HLS playlists and segments, the \
         player page), by status class.\n# TYPE {name} counter"
    );
    for (k, kind) in MEDIA_KINDS.iter().enumerate() {
        for (c, class) in STATUS_CLASSES.iter().enumerate() {
            let n = m.0[k][c].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{kind=\"{kind}\",status=\"{class}\"}} {n}");
        }
    }
}

/// One torrent's figures.
struct Row {
    id: String,
    name: String,
    downloaded: u64,
    p2p: u64,
    http: u64,
    uploaded: u64,
    peers: u64,
    progress: f64,
}

fn render(rows: &[Row]) -> String {
    let mut out = String::with_capacity(256 + rows.len() * 512);
    let _ = writeln!(out, "# HELP peercdn_torrents Torrents running.");
    let _ = writeln!(out, "# TYPE peercdn_torrents gauge");
    let _ = writeln!(out, "peercdn_torrents {}", rows.len());
    type Get = fn(&Row) -> String;
    let series: [(&str, &str, &str, Get); 6] = [
        (
            "peercdn_downloaded_bytes_total",
            "counter",
            "Payload bytes downloaded this session.",
            |r| r.downloaded.to_string(),
        ),
        (
            "peercdn_p2p_downloaded_bytes_total",
            "counter",
            "Payload bytes downloaded from peers (BitTorrent).",
            |r| r.p2p.to_string(),
        ),
        (
            "peercdn_http_downloaded_bytes_total",
            "counter",
            "Payload bytes downloaded from web seeds / the CDN (HTTP).",
            |r| r.http.to_string(),
        ),
        (
            "peercdn_uploaded_bytes_total",
            "counter",
            "Payload bytes uploaded this session.",
            |r| r.uploaded.to_string(),
        ),
        ("peercdn_peers", "gauge", "Connected peers.", |r| {
            r.peers.to_string()
        }),
        (
            "peercdn_progress_ratio",
            "gauge",
            "Fraction of the torrent verified, 0 to 1.",
            |r| format!("{:.6}", r.progress),
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for r in rows {
            let _ = writeln!(
                out,
                "{name}{{id=\"{}\",name=\"{}\"}} {}",
                r.id,
                escape(&r.name),
                get(r)
            );
        }
    }
    out
}

/// One live stream's figures.
struct LiveRow {
    id: String,
    name: String,
    p2p: u64,
    cdn: u64,
    uploaded: u64,
    peers: u64,
    readers: u64,
    delay_s: Option<f64>,
    player_delay_s: Option<f64>,
    banned: u64,
    cdn_pieces: u64,
    cdn_failures: u64,
}

fn render_live(out: &mut String, rows: &[LiveRow]) {
    let _ = writeln!(out, "# HELP peercdn_live_streams Live streams running.");
    let _ = writeln!(out, "# TYPE peercdn_live_streams gauge");
    let _ = writeln!(out, "peercdn_live_streams {}", rows.len());
    let label = |r: &LiveRow| format!("id=\"{}\",name=\"{}\"", r.id, escape(&r.name));
    let name = "peercdn_live_downloaded_bytes_total";
    let _ = writeln!(
        out,
        "# HELP {name} Live payload bytes downloaded, by origin (p2p: peers, cdn: HTTP)."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for r in rows {
        let l = label(r);
        let _ = writeln!(out, "{name}{{{l},origin=\"p2p\"}} {}", r.p2p);
        let _ = writeln!(out, "{name}{{{l},origin=\"cdn\"}} {}", r.cdn);
    }
    type Get = fn(&LiveRow) -> Option<String>;
    let series: [(&str, &str, &str, Get); 8] = [
        (
            "peercdn_live_player_delay_max_seconds",
            "gauge",
            "The largest delay behind the source among this engine's progressive players.",
            |r| r.player_delay_s.map(|d| format!("{d:.3}")),
        ),
        (
            "peercdn_live_cdn_pieces_total",
            "counter",
            "Pieces fetched from the CDN and verified.",
            |r| Some(r.cdn_pieces.to_string()),
        ),
        (
            "peercdn_live_cdn_failures_total",
            "counter",
            "CDN requests that failed (verification included).",
            |r| Some(r.cdn_failures.to_string()),
        ),
        (
            "peercdn_live_uploaded_bytes_total",
            "counter",
            "Live payload bytes uploaded to peers.",
            |r| Some(r.uploaded.to_string()),
        ),
        ("peercdn_live_peers", "gauge", "Connected peers.", |r| {
            Some(r.peers.to_string())
        }),
        (
            "peercdn_live_readers",
            "gauge",
            "Players reading the stream (progressive and HLS).",
            |r| Some(r.readers.to_string()),
        ),
        (
            "peercdn_live_delay_seconds",
            "gauge",
            "Now minus the source timestamp of the newest held piece.",
            |r| r.delay_s.map(|d| format!("{d:.3}")),
        ),
        (
            "peercdn_live_banned_peers_total",
            "counter",
            "Peers banned for bad pieces or headers.",
            |r| Some(r.banned.to_string()),
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for r in rows {
            if let Some(v) = get(r) {
                let _ = writeln!(out, "{name}{{{}}} {v}", label(r));
            }
        }
    }
}

fn render_dht(out: &mut String, stats: Option<&DhtStats>) {
    let _ = writeln!(
        out,
        "# HELP peercdn_dht_enabled 1 when the node runs a DHT node."
    );
    let _ = writeln!(out, "# TYPE peercdn_dht_enabled gauge");
    let _ = writeln!(out, "peercdn_dht_enabled {}", u8::from(stats.is_some()));
    let Some(s) = stats else {
        return;
    };
    let series: [(&str, &str, &str, u64); 7] = [
        (
            "peercdn_dht_nodes",
            "gauge",
            "Nodes in the DHT routing table.",
            s.nodes as u64,
        ),
        (
            "peercdn_dht_bootstrapped",
            "gauge",
            "1 once the routing table has held a node.",
            u64::from(s.bootstrapped),
        ),
        (
            "peercdn_dht_lookups_total",
            "counter",
            "DHT get_peers lookups started.",
            s.lookups,
        ),
        (
            "peercdn_dht_lookups_done_total",
            "counter",
            "DHT get_peers lookups finished.",
            s.lookups_done,
        ),
        (
            "peercdn_dht_peers_found_total",
            "counter",
            "Peers returned by DHT lookups (summed per lookup).",
            s.peers_found,
        ),
        (
            "peercdn_dht_announces_total",
            "counter",
            "DHT announces stored by at least one node.",
            s.announces,
        ),
        (
            "peercdn_dht_announce_failures_total",
            "counter",
            "DHT announces that failed or timed out.",
            s.announce_failures,
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
}

fn render_wires(out: &mut String, w: &Wires) {
    let name = "peercdn_peer_connections";
    let _ = writeln!(
        out,
        "# HELP {name} Peer connections open, by encryption: plain BitTorrent, an obfuscated \
         (MSE/PE) handshake with a plain payload, or RC4 throughout."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (wire, n) in [
        ("plain", w.plain),
        ("obfuscated", w.obfuscated),
        ("rc4", w.rc4),
    ] {
        let _ = writeln!(out, "{name}{{encryption=\"{wire}\"}} {n}");
    }
    let name = "peercdn_peer_connections_by_transport";
    let _ = writeln!(
        out,
        "# HELP {name} Peer connections open, by transport: TCP or uTP (BEP 29)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    let all = w.plain + w.obfuscated + w.rc4;
    for (transport, n) in [("tcp", all.saturating_sub(w.utp)), ("utp", w.utp)] {
        let _ = writeln!(out, "{name}{{transport=\"{transport}\"}} {n}");
    }
    let name = "peercdn_peer_connections_holepunched";
    let _ = writeln!(
        out,
        "# HELP {name} Peer connections open that came of a BEP 55 introduction (holepunched)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {}", w.holepunched);
}

fn render_disconnects(out: &mut String, counts: &DisconnectCounts) {
    let name = "peercdn_peer_disconnects_total";
    let _ = writeln!(
        out,
        "# HELP {name} Peer connections closed by the swarms, by reason."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for (reason, n) in counts.iter() {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
    }
}

/// `peercdn_build_info` and the usual `process_*` series (Linux, from `/proc/self`; absent
/// elsewhere or when unreadable).
fn render_build_and_process(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP peercdn_build_info The build: its version (value 1)."
    );
    let _ = writeln!(out, "# TYPE peercdn_build_info gauge");
    let _ = writeln!(
        out,
        "peercdn_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let Ok(me) = procfs::process::Process::myself() else {
        return;
    };
    let mut series: Vec<(&str, &str, &str, String)> = Vec::new();
    if let Ok(stat) = me.stat() {
        let tps = procfs::ticks_per_second();
        let page = procfs::page_size();
        let cpu = (stat.utime + stat.stime) as f64 / tps.max(1) as f64;
        series.push((
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, seconds.",
            format!("{cpu:.2}"),
        ));
        series.push((
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size, bytes.",
            (stat.rss * page).to_string(),
        ));
        series.push((
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size, bytes.",
            stat.vsize.to_string(),
        ));
        if let Ok(boot) = procfs::boot_time_secs() {
            let start = boot as f64 + stat.starttime as f64 / tps.max(1) as f64;
            series.push((
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch, seconds.",
                format!("{start:.2}"),
            ));
        }
    }
    if let Ok(n) = me.fd_count() {
        series.push((
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            n.to_string(),
        ));
    }
    if let Ok(limits) = me.limits() {
        if let procfs::process::LimitValue::Value(v) = limits.max_open_files.soft_limit {
            series.push((
                "process_max_fds",
                "gauge",
                "Most open file descriptors allowed.",
                v.to_string(),
            ));
        }
    }
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The media routes are told apart, other routes not counted; status classes clamp.
    #[test]
    fn media_requests_by_kind_and_class() {
        assert_eq!(media_kind("/ace/getstream"), Some(0));
        assert_eq!(media_kind("/ace/manifest.m3u8"), Some(1));
        assert_eq!(media_kind("/hls/manifest.m3u8"), Some(1));
        assert_eq!(media_kind("/ace/l/abc/s3.ts"), Some(2));
        assert_eq!(media_kind("/ace/v/abc/0/1.ts"), Some(3));
        assert_eq!(media_kind("/play/abc"), Some(4));
        assert_eq!(media_kind("/api/v1/torrents"), None);
        let m = MediaRequests::default();
        m.add(1, 200);
        m.add(1, 504);
        m.add(1, 101);
        let mut out = String::new();
        render_media(&mut out, &m);
        assert!(
            out.contains("peercdn_http_media_requests_total{kind=\"playlist\",status=\"2xx\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("peercdn_http_media_requests_total{kind=\"playlist\",status=\"5xx\"} 1"),
            "{out}"
        );
    }

    #[test]
    fn renders_escaped_labels() {
        let rows = [Row {
            id: "ab".into(),
            name: "a \"b\"\\\nc".into(),
            downloaded: 5,
            p2p: 4,
            http: 1,
            uploaded: 6,
            peers: 2,
            progress: 0.5,
        }];
        let text = render(&rows);
        assert!(text.contains("peercdn_torrents 1\n"));
        assert!(text.contains(
            "peercdn_downloaded_bytes_total{id=\"ab\",name=\"a \\\"b\\\"\\\\\\nc\"} 5\n"
        ));
        assert!(text.contains("peercdn_progress_ratio{id=\"ab\",name="));
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 7);
    }

    #[test]
    fn renders_dht_series() {
        let mut text = String::new();
        render_dht(&mut text, None);
        assert!(text.contains("peercdn_dht_enabled 0\n"));
        assert!(!text.contains("peercdn_dht_nodes"));
        let stats = DhtStats {
            nodes: 12,
            bootstrapped: true,
            lookups: 3,
            announces: 2,
            ..DhtStats::default()
        };
        let mut text = String::new();
        render_dht(&mut text, Some(&stats));
        for line in [
            "peercdn_dht_enabled 1\n",
            "peercdn_dht_nodes 12\n",
            "peercdn_dht_bootstrapped 1\n",
            "peercdn_dht_lookups_total 3\n",
            "peercdn_dht_announces_total 2\n",
            "peercdn_dht_announce_failures_total 0\n",
        ] {
            assert!(text.contains(line), "{line}");
        }
    }

    #[test]
    fn renders_disconnects_by_reason() {
        let mut counts = DisconnectCounts::default();
        counts.add(&peercdn_core::DisconnectReason::Idle);
        let mut text = String::new();
        render_disconnects(&mut text, &counts);
        assert!(text.contains("peercdn_peer_disconnects_total{reason=\"idle\"} 1\n"));
        assert!(text.contains("peercdn_peer_disconnects_total{reason=\"bad_piece\"} 0\n"));
    }

    #[test]
    fn renders_live_series() {
        let rows = [LiveRow {
            id: "cd".into(),
            name: "ch".into(),
            p2p: 3,
            cdn: 4,
            uploaded: 5,
            peers: 1,
            readers: 2,
            delay_s: None,
            player_delay_s: Some(1.25),
            banned: 0,
            cdn_pieces: 7,
            cdn_failures: 1,
        }];
        let mut text = String::new();
        render_live(&mut text, &rows);
        assert!(text.contains("peercdn_live_streams 1\n"));
        assert!(
            text.contains("peercdn_live_player_delay_max_seconds{id=\"cd\",name=\"ch\"} 1.250\n")
        );
        assert!(text.contains("peercdn_live_cdn_pieces_total{id=\"cd\",name=\"ch\"} 7\n"));
        assert!(text.contains("peercdn_live_cdn_failures_total{id=\"cd\",name=\"ch\"} 1\n"));
        assert!(text.contains(
            "peercdn_live_downloaded_bytes_total{id=\"cd\",name=\"ch\",origin=\"p2p\"} 3\n"
        ));
        assert!(text.contains(
            "peercdn_live_downloaded_bytes_total{id=\"cd\",name=\"ch\",origin=\"cdn\"} 4\n"
        ));
        assert!(text.contains("peercdn_live_readers{id=\"cd\",name=\"ch\"} 2\n"));
        assert!(
            !text.contains("peercdn_live_delay_seconds{"),
            "unknown delay is left out"
        );
    }
}
