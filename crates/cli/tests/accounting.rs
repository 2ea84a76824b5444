//! Accounting end to end, real processes on 127.0.0.1: `peercdn broadcast` (its publish dir
//! served by nginx as the CDN, its own API named as the receipt collector), ten viewer engines
//! that relay to each other with a player each, and two viewers with no peers that play from
//! the CDN alone. Every viewer signs receipts for what it received; relaying viewers hand them
//! over the swarm, CDN-only ones over HTTP to the collector. Once the stream has ended and the
//! last receipts are in, the broadcaster's ledger must agree with what each engine counted
//! (bytes per uploader, per viewer, per CDN host, watch time per viewer) and with nginx's access
//! log; forged, replayed and inflated receipts are refused, a colluding pair's credit stays
//! under the watch-time cap, a tampered ledger fails `peercdn ledger verify`, and the Stellar
//! SDK (Python) reads the settlement envelopes as paying what the ledger owes.
#![allow(clippy::disallowed_methods)] // tests: the real clock bounds waits

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Seconds of stream (`PEERCDN_ACCOUNTING_STREAM_S` for `scripts/bench-accounting.sh`).
fn stream_s() -> u64 {
    std::env::var("PEERCDN_ACCOUNTING_STREAM_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

/// Seconds between rounds of receipts (`PEERCDN_ACCOUNTING_INTERVAL`; 2 s keeps the test short).
fn interval() -> String {
    std::env::var("PEERCDN_ACCOUNTING_INTERVAL").unwrap_or_else(|_| "2".into())
}

fn json(url: &str) -> Value {
    let (status, body) = http_get(url);
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

/// Runs `peercdn ledger ARGS --data-dir DIR` to completion: (success, stdout, stderr).
fn ledger(dir: &Path, data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_peercdn"))
        .arg("ledger")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .current_dir(dir)
        .output()
        .expect("run peercdn ledger");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `a` and `b` within 1 % of the larger (or 64 KiB for small figures).
fn close(what: &str, ledger: u64, engine: u64) {
    let diff = ledger.abs_diff(engine);
    assert!(
        diff <= (ledger.max(engine) / 100).max(64 * 1024),
        "{what}: ledger {ledger} vs engine {engine}"
    );
}

/// An engine's node key, hex.
fn node_key(base: &str) -> String {
    json(&format!("{base}/api/v1/ledger"))["key"]
        .as_str()
        .expect("key")
        .to_string()
}

fn post_receipts(url: &str, body: Vec<u8>) -> (u16, Value) {
    let r = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(url)
        .body(body)
        .send()
        .expect("POST receipts");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn the_ledger_agrees_with_every_engine_and_the_cdn_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let stream_s = stream_s();
    let interval = interval();
    let src = make_live_source(d, &stream_s.to_string(), "1900k");
    // Long enough to read the last receipts and run the checks after the input ends.
    let linger = (60 + 10 * interval.parse::<u64>().expect("interval")).to_string();
    let publish = d.join("publish");
    std::fs::create_dir_all(&publish).expect("mkdir");
    let nginx = nginx_start(d, &publish);
    let bc_data = d.join("bc-data");
    let Broadcast {
        proc: mut bc,
        port: bc_port,
        id,
        http: bc_http,
    } = broadcast_start(
        d,
        &src,
        "Accounted channel",
        &[
            "--publish-dir",
            publish.to_str().expect("utf8"),
            "--cdn",
            &nginx.url(),
            "--collector",
            "self",
            "--receipt-interval",
            &interval,
            "--linger",
            &linger,
            "--upload-limit",
            "750KB",
        ],
    );
    let started = Instant::now();

    // Ten relaying viewers, each knowing the source and the viewer before it.
    let mut viewers: Vec<(Proc, u16, String)> = Vec::new();
    for i in 0..10 {
        let source = format!("127.0.0.1:{bc_port}");
        let mut args = vec![
            "--receipt-interval",
            &interval,
            "--upload-limit",
            "500KB",
            "--peer",
            &source,
        ];
        let before;
        if let Some(prev) = viewers.last() {
            before = format!("127.0.0.1:{}", prev.1);
            args.extend(["--peer", &before]);
        }
        viewers.push(engine_start(d, &format!("viewer{i}"), &args));
    }
    // Two viewers with no peers: the CDN alone (the descriptor from the publish dir names the
    // collector, where their receipts go over HTTP).
    let desc_url = format!("{}{id}/descriptor.peerlive", nginx.url());
    let mut cdn_viewers = Vec::new();
    for i in 0..2 {
        cdn_viewers.push(engine_start(
            d,
            &format!("cdn{i}"),
            &["--receipt-interval", &interval],
        ));
    }
    let mut players = Vec::new();
    for (i, (_, _, base)) in viewers.iter().enumerate() {
        players.push(ffmpeg_decode_start(
            d,
            &format!("player{i}"),
            &format!("{base}/ace/getstream?id={id}"),
        ));
    }
    for (i, (_, _, base)) in cdn_viewers.iter().enumerate() {
        players.push(ffmpeg_decode_start(
            d,
            &format!("cdn-player{i}"),
            &format!("{base}/ace/getstream?url={desc_url}"),
        ));
    }

    // The stream ends; the players stop; five rounds of receipts later every figure is final.
    wait_until(
        Duration::from_secs(stream_s + 60),
        "the input to end",
        || bc.log_text().contains("input ended"),
    );
    std::thread::sleep(Duration::from_secs(2));
    for (mut p, _) in players {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    let secs: u64 = interval.parse().expect("interval");
    std::thread::sleep(Duration::from_secs(5 * secs));
    eprintln!(
        "stream ended after {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let report = json(&format!("{bc_http}/api/v1/ledger"));
    let counters = &report["receipts"];
    let report = &report["report"];
    assert!(report.is_object(), "no ledger: {counters}");
    eprintln!("ledger totals: {}", report["totals"]);
    eprintln!("receipt counters: {counters}");
    for reason in ["unknown_content", "non_monotonic", "future", "inflated"] {
        assert_eq!(
            counters["refused"][reason], 0,
            "honest receipts refused: {counters}"
        );
    }
    let find = |list: &str, field: &str, key: &str| -> Value {
        report[list]
            .as_array()
            .and_then(|a| a.iter().find(|x| x[field] == key).cloned())
            .unwrap_or(Value::Null)
    };

    // Per viewer: verified bytes from peers and from the CDN, and watch time.
    let mut stream_bytes = 0;
    let mut by_host: std::collections::BTreeMap<String, u64> = Default::default();
    for (name, (_, _, base)) in viewers
        .iter()
        .map(|v| ("viewer", v))
        .chain(cdn_viewers.iter().map(|v| ("cdn viewer", v)))
    {
        let st = json(&format!("{base}/api/v1/live/{id}"));
        let vkey = node_key(base);
        let line = find("viewers", "key", &vkey);
        assert!(line.is_object(), "{name} {vkey} not in the ledger: {st}");
        let p2p = st["p2p_downloaded"].as_u64().unwrap_or(0);
        let mut cdn = 0;
        for h in st["cdn_verified"].as_array().into_iter().flatten() {
            let n = h["bytes"].as_u64().unwrap_or(0);
            *by_host
                .entry(h["host"].as_str().unwrap_or_default().to_string())
                .or_default() += n;
            cdn += n;
        }
        close(
            &format!("{name} {vkey} P2P"),
            line["p2p_bytes"].as_u64().unwrap(),
            p2p,
        );
        close(
            &format!("{name} {vkey} CDN"),
            line["cdn_bytes"].as_u64().unwrap(),
            cdn,
        );
        let watched = st["watched_ms"].as_u64().unwrap_or(0);
        assert!(watched > 20_000, "{name} watched only {watched} ms");
        let lw = line["watched_ms"].as_u64().unwrap();
        assert!(
            lw.abs_diff(watched) <= 1000,
            "{name} watch time: ledger {lw} vs engine {watched}"
        );
        stream_bytes += p2p + cdn;
        if name == "cdn viewer" {
            assert_eq!(p2p, 0, "a CDN-only viewer got bytes from peers: {st}");
            assert!(cdn > 1_000_000, "{st}");
        }
    }
    // Per CDN host: what the engines verified from it.
    assert!(!by_host.is_empty());
    for (host, n) in &by_host {
        let got = find("cdn_hosts", "host", host)["bytes"]
            .as_u64()
            .unwrap_or(0);
        close(&format!("CDN host {host}"), got, *n);
    }
    // Per uploader: what each engine, the broadcaster's included, sent — less what its
    // receivers could not use (a block that arrived twice, asked again of another peer when
    // it was late, counts once: the receivers' `wasted`), which no receipt covers.
    let wasted: u64 = viewers
        .iter()
        .map(|(_, _, base)| {
            json(&format!("{base}/api/v1/live/{id}"))["wasted"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    let (mut credited, mut sent_all) = (0, 0);
    for base in viewers.iter().map(|v| &v.2).chain([&bc_http]) {
        let st = json(&format!("{base}/api/v1/live/{id}"));
        let k = node_key(base);
        let got = find("uploaders", "key", &k)["bytes"].as_u64().unwrap_or(0);
        let up = st["uploaded"].as_u64().unwrap_or(0);
        eprintln!("uploader {k}: ledger {got}, sent {up}");
        assert!(
            got <= up && got + wasted + up / 100 >= up,
            "uploader {k}: credited {got} for {up} sent ({wasted} wasted by receivers)"
        );
        credited += got;
        sent_all += up;
    }
    eprintln!("uploaders: {credited} credited, {sent_all} sent, {wasted} wasted by receivers");
    assert!(
        sent_all - credited <= wasted + sent_all / 200,
        "sent {sent_all}, credited {credited}: more missing than the {wasted} wasted"
    );
    // The receipts cost next to nothing.
    let sent: u64 = viewers
        .iter()
        .chain(&cdn_viewers)
        .map(|(_, _, base)| {
            json(&format!("{base}/api/v1/ledger"))["receipts"]["sent_bytes"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    let watched_min = report["totals"]["watched_ms"].as_u64().unwrap_or(0) as f64 / 60_000.0;
    eprintln!(
        "receipts: {sent} bytes for {stream_bytes} bytes of stream ({:.3} %, with a {interval} s \
         interval), {:.0} bytes per viewer-minute",
        sent as f64 * 100.0 / stream_bytes as f64,
        sent as f64 / watched_min
    );
    println!(
        "ACCOUNTING {}",
        serde_json::json!({
            "interval_s": secs, "stream_s": stream_s, "viewers": 12,
            "receipt_bytes": sent, "stream_bytes": stream_bytes,
            "viewer_minutes": watched_min,
        })
    );

    // The CDN's own log agrees with what viewers signed for.
    let log = nginx.prefix.join("access.log");
    let (ok, out, err) = ledger(
        d,
        &bc_data,
        &[
            "reconcile",
            "--cdn-log",
            log.to_str().expect("utf8"),
            "--json",
        ],
    );
    assert!(ok, "reconcile: {out}{err}");
    eprintln!("reconcile: {out}");

    // Refusals, over the collector's HTTP route: a forged receipt, a replayed one (an earlier
    // receipt of a pair, from the export), an inflated one (a new viewer key claiming far more
    // than its watch time allows).
    let export = d.join("export.json");
    let (ok, out, err) = ledger(
        d,
        &bc_data,
        &["export", "--out", export.to_str().expect("utf8")],
    );
    assert!(ok, "export: {out}{err}");
    let (ok, out, err) = ledger(d, &bc_data, &["verify", export.to_str().expect("utf8")]);
    assert!(ok, "verify of the export: {out}{err}");
    let ex: Value = serde_json::from_slice(&std::fs::read(&export).expect("export")).expect("json");
    let entries = ex["entries"].as_array().expect("entries");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let receipts: Vec<peercdn_core::receipt::Receipt> = entries
        .iter()
        .map(|e| {
            let raw = b64.decode(e["receipt"].as_str().unwrap()).unwrap();
            peercdn_core::receipt::Receipt::decode(&raw).unwrap()
        })
        .collect();
    let first = &receipts[0];
    let collector = format!("{bc_http}/api/v1/receipts");
    let mut forged = first.clone();
    forged.bytes += 1_000_000;
    let (status, body) = post_receipts(
        &collector,
        peercdn_core::receipt::encode_batch(&[forged.encode()]),
    );
    assert_eq!(status, 400, "forged: {body}");
    let replayed = receipts
        .iter()
        .enumerate()
        .find(|(i, r)| receipts[i + 1..].iter().any(|l| l.pair() == r.pair()))
        .map(|(_, r)| r.clone())
        .expect("a pair with two receipts");
    let (status, body) = post_receipts(
        &collector,
        peercdn_core::receipt::encode_batch(&[replayed.encode()]),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["reason"], "replayed", "{body}");
    let rogue = ed25519_dalek::SigningKey::from_bytes(&[77; 32]);
    let inflated = peercdn_core::receipt::Receipt::sign(
        &rogue,
        peercdn_core::receipt::Claim {
            content: first.content,
            from: first.from.clone(),
            bytes: 10_000_000_000,
            watched_ms: 5_000,
            delay_ms: None,
            seq: 1,
            time: first.time,
        },
    )
    .expect("sign");
    let (status, body) = post_receipts(
        &collector,
        peercdn_core::receipt::encode_batch(&[inflated.encode()]),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["reason"], "inflated", "{body}");

    // A colluding pair: a viewer key signs an uploader key of the same owner ever larger
    // receipts for 5 s of watching. What it can get credited stays under the cap:
    // (5 s + 60 s) × the stream's rate (about 260 kB/s here) × 1.5.
    let rogue_up = ed25519_dalek::SigningKey::from_bytes(&[78; 32])
        .verifying_key()
        .to_bytes();
    let mut verdicts = Vec::new();
    for (i, bytes) in [1_000_000u64, 10_000_000, 100_000_000, 1_000_000_000]
        .into_iter()
        .enumerate()
    {
        let r = peercdn_core::receipt::Receipt::sign(
            &rogue,
            peercdn_core::receipt::Claim {
                content: first.content,
                from: peercdn_core::receipt::Uploader::Peer(rogue_up),
                bytes,
                watched_ms: 5_000,
                delay_ms: None,
                seq: 10 + i as u64,
                time: first.time,
            },
        )
        .expect("sign");
        let (status, body) = post_receipts(
            &collector,
            peercdn_core::receipt::encode_batch(&[r.encode()]),
        );
        assert_eq!(status, 200, "{body}");
        verdicts.push(
            body["results"][0]["status"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    assert_eq!(verdicts[0], "new", "{verdicts:?}");
    assert_eq!(verdicts[3], "refused", "{verdicts:?}");
    let after = json(&format!("{bc_http}/api/v1/ledger"));
    let credited = after["report"]["uploaders"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["key"] == hex::encode(rogue_up)))
        .and_then(|u| u["bytes"].as_u64())
        .unwrap_or(0);
    assert!(
        credited > 0 && credited <= 65 * 400_000 * 3 / 2,
        "colluding pair credited {credited} ({verdicts:?})"
    );

    // Settlement: envelopes for 0.5 XLM per GB, signed with the broadcaster's key, decoded
    // and checked with the Stellar SDK (Python, from PyPI).
    let seed: [u8; 32] = std::fs::read(bc_data.join("node.key"))
        .expect("node key")
        .try_into()
        .expect("32 bytes");
    let secret = d.join("bc.secret");
    std::fs::write(
        &secret,
        stellar_strkey::Unredacted(&stellar_strkey::ed25519::PrivateKey(seed)).to_string(),
    )
    .expect("write secret");
    let xdr = d.join("payouts.xdr");
    let (ok, out, err) = ledger(
        d,
        &bc_data,
        &[
            "export",
            "--stellar",
            "--rate",
            "0.5",
            "--sequence",
            "100",
            "--secret-file",
            secret.to_str().expect("utf8"),
            "--out",
            xdr.to_str().expect("utf8"),
        ],
    );
    assert!(ok, "export --stellar: {out}{err}");
    let py = std::process::Command::new(ace_python())
        .arg(interop("stellar_check.py"))
        .arg(&xdr)
        .output()
        .expect("run the Stellar SDK");
    assert!(
        py.status.success(),
        "stellar_check.py: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let envelopes: Value = serde_json::from_slice(&py.stdout).expect("json");
    let bc_account = after["account"].as_str().expect("account").to_string();
    let mut paid = std::collections::BTreeMap::new();
    for (i, e) in envelopes.as_array().expect("envelopes").iter().enumerate() {
        assert_eq!(e["source"], bc_account.as_str(), "{e}");
        assert_eq!(e["sequence"], 100 + i as u64, "{e}");
        let ops = e["payments"].as_array().expect("payments");
        assert!(!ops.is_empty() && ops.len() <= 100, "{e}");
        assert_eq!(e["fee"], 100 * ops.len() as u64, "{e}");
        assert_eq!(e["valid_signatures"], 1, "{e}");
        for p in ops {
            assert_eq!(p["native"], true, "{p}");
            let (whole, frac) = p["amount"]
                .as_str()
                .expect("amount")
                .split_once('.')
                .unwrap_or((p["amount"].as_str().unwrap_or("0"), "0"));
            let stroops = whole.parse::<u64>().expect("XLM") * 10_000_000
                + format!("{frac:0<7}").parse::<u64>().expect("stroops");
            paid.insert(p["destination"].as_str().expect("G…").to_string(), stroops);
        }
    }
    let owed: std::collections::BTreeMap<String, u64> = after["report"]["uploaders"]
        .as_array()
        .expect("uploaders")
        .iter()
        .filter(|u| u["account"] != bc_account.as_str())
        .map(|u| {
            let b = u["bytes"].as_u64().unwrap_or(0) as u128;
            (
                u["account"].as_str().unwrap_or_default().to_string(),
                (b * 5_000_000 / 1_000_000_000) as u64,
            )
        })
        .filter(|(_, s)| *s > 0)
        .collect();
    assert_eq!(paid, owed, "the envelopes pay what the ledger owes");

    // The broadcaster ends; its ledger verifies, and a tampered copy does not.
    bc.terminate(Duration::from_secs(20));
    let (ok, out, err) = ledger(d, &bc_data, &["verify"]);
    assert!(ok, "verify: {out}{err}");
    let copy = d.join("tampered");
    std::fs::create_dir_all(&copy).expect("mkdir");
    // A consistent copy (the ledger may still have pages in its write-ahead log beside it).
    rusqlite::Connection::open(bc_data.join("ledger.db"))
        .expect("open the ledger")
        .execute(
            "VACUUM INTO ?1",
            [copy.join("ledger.db").to_str().expect("utf8")],
        )
        .expect("copy the ledger");
    let db = rusqlite::Connection::open(copy.join("ledger.db")).expect("open copy");
    db.execute(
        "UPDATE latest SET bytes = bytes * 2 WHERE rowid = (SELECT MIN(rowid) FROM latest)",
        [],
    )
    .expect("tamper");
    drop(db);
    let (ok, out, err) = ledger(d, &copy, &["verify"]);
    assert!(!ok, "a tampered ledger verified: {out}{err}");
    drop(nginx);
}
