//! `peercdn ledger report|verify|export|reconcile`, whole process, on a broadcaster's data
//! directory: a ledger built with the engine's API (receipts signed by viewer keys, the data
//! directory's own node key as the broadcaster) is reported, verified, tampered with, exported
//! and checked alone, settled as Stellar envelopes and checked against the ledger, and
//! reconciled with CDN access logs. No network: every command only reads and writes files.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use ed25519_dalek::SigningKey;
use peercdn_core::receipt::{Claim, Receipt, Uploader};
use peercdn_core::InfoHash;
use peercdn_engine::ledger::stellar::{self, ExportParams, Network, Payment};
use peercdn_engine::ledger::{Collecting, Ledger, LEDGER_FILE};
use peercdn_engine::nodekey::{NodeKey, KEY_FILE};
use serde_json::Value;

/// When the receipts were signed and taken (no clock read).
const NOW: u64 = 1_796_000_000;
const CONTENT: InfoHash = InfoHash([0x3c; 20]);
const CDN_HOST: &str = "cdn.example";
/// Bytes viewers 0 and 1 signed for from the CDN host.
const CDN_BYTES: [u64; 2] = [5_000_000, 3_000_000];
/// Bytes the broadcaster delivered to each viewer.
const OWN_BYTES: u64 = 2_000_000;
const VIEWERS: u32 = 4;

/// A deterministic key for uploader or viewer `n`.
fn key(n: u32) -> SigningKey {
    let mut seed = [0x5a; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    SigningKey::from_bytes(&seed)
}

fn viewer(j: u32) -> SigningKey {
    key(1_000_000 + j)
}

fn watched_ms(j: u32) -> u64 {
    u64::from(j + 1) * 60_000
}

/// Bytes uploader `i` delivered (to viewer `i % VIEWERS`).
fn uploaded(i: u32) -> u64 {
    u64::from(i + 1) * 1_000_000
}

fn account(k: &[u8; 32]) -> String {
    stellar_strkey::ed25519::PublicKey(*k)
        .to_string()
        .to_string()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    /// The broadcaster's data directory.
    data: PathBuf,
    /// The working directory of every command, where they write their files.
    cwd: PathBuf,
    /// The broadcaster's key (the data directory's node key).
    broadcaster: [u8; 32],
}

/// A data directory whose ledger holds receipts from 4 viewers: for the broadcaster's bytes,
/// for `uploaders` other peers' and for the CDN host's (viewers 0 and 1).
fn fixture(uploaders: u32) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cwd = tmp.path().join("work");
    std::fs::create_dir_all(&cwd).unwrap();
    let broadcaster = NodeKey::load_or_create(&data).unwrap().public();
    let mut l = Ledger::open(&data).unwrap();
    l.collect(CONTENT, Collecting::live(0));
    let sign = |j: u32, from: Uploader, bytes: u64, seq: u64| {
        let claim = Claim {
            content: CONTENT,
            from,
            bytes,
            watched_ms: watched_ms(j),
            delay_ms: None,
            seq,
            time: NOW,
        };
        Receipt::sign(&viewer(j), claim).unwrap()
    };
    let mut receipts = Vec::new();
    for j in 0..VIEWERS {
        receipts.push(sign(j, Uploader::Peer(broadcaster), OWN_BYTES, 1));
    }
    for (j, b) in CDN_BYTES.iter().enumerate() {
        receipts.push(sign(j as u32, Uploader::Cdn(CDN_HOST.into()), *b, 1));
    }
    for i in 0..uploaders {
        let from = Uploader::Peer(key(i).verifying_key().to_bytes());
        // An earlier receipt of the same pair: only the latest counts.
        receipts.push(sign(i % VIEWERS, from.clone(), uploaded(i) / 2, 1));
        receipts.push(sign(i % VIEWERS, from, uploaded(i), 2));
    }
    let verdicts = l.append(&receipts, NOW).unwrap();
    assert!(verdicts.iter().all(Result::is_ok), "{verdicts:?}");
    Fixture {
        _tmp: tmp,
        data,
        cwd,
        broadcaster,
    }
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// `peercdn ledger ARGS… --data-dir DATA`, in the fixture's working directory, with no config
/// file of the machine's user.
fn ledger(f: &Fixture, args: &[&str]) -> Run {
    ledger_in(&f.data, &f.cwd, args)
}

fn ledger_in(data: &Path, cwd: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_peercdn"))
        .arg("ledger")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .current_dir(cwd)
        .env("XDG_CONFIG_HOME", cwd)
        .env_remove("PEERCDN_CONFIG")
        .env_remove("PEERCDN_DATA_DIR")
        .output()
        .expect("run peercdn");
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Run {
    fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "failed: {}\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn fails(self) -> Run {
        assert_eq!(
            self.status.code(),
            Some(1),
            "{}\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

#[test]
fn the_report_counts_the_latest_receipts_and_names_the_accounts() {
    let f = fixture(3);
    let r = ledger(&f, &["report", "--json"]).ok().json();
    let p2p = VIEWERS as u64 * OWN_BYTES + (0..3).map(uploaded).sum::<u64>();
    assert_eq!(r["totals"]["p2p_bytes"], p2p);
    assert_eq!(r["totals"]["cdn_bytes"], CDN_BYTES.iter().sum::<u64>());
    assert_eq!(
        r["totals"]["watched_ms"],
        (0..VIEWERS).map(watched_ms).sum::<u64>()
    );
    assert_eq!(r["totals"]["viewers"], VIEWERS);
    assert_eq!(r["entries"], 4 + 2 + 3 * 2);
    let ups = r["uploaders"].as_array().unwrap();
    assert_eq!(ups.len(), 4, "{ups:?}");
    for i in 0..3 {
        let k = key(i).verifying_key().to_bytes();
        let u = ups.iter().find(|u| u["key"] == hex::encode(k)).unwrap();
        assert_eq!(u["account"], account(&k));
        assert_eq!(
            (&u["bytes"], &u["viewers"]),
            (&uploaded(i).into(), &1.into())
        );
    }
    let own = ups
        .iter()
        .find(|u| u["key"] == hex::encode(f.broadcaster))
        .unwrap();
    assert_eq!(own["bytes"], VIEWERS as u64 * OWN_BYTES);
    assert_eq!(r["cdn_hosts"][0]["host"], CDN_HOST);
    assert_eq!(r["contents"][0]["cdn_bytes"], CDN_BYTES.iter().sum::<u64>());

    let t = ledger(&f, &["report"]).ok().stdout;
    for i in 0..3 {
        assert!(
            t.contains(&account(&key(i).verifying_key().to_bytes())),
            "{t}"
        );
    }
    assert!(t.contains(&account(&f.broadcaster)), "{t}");
    assert!(t.contains("uploaders (4)") && t.contains(CDN_HOST), "{t}");
    let own = format!("{}* ", &hex::encode(f.broadcaster)[..16]);
    assert!(
        t.contains(&own) && t.contains("* this node, the broadcaster"),
        "{t}"
    );
    // Viewer 3 watched 4 minutes; the content, 10.
    assert!(t.contains("0:04:00") && t.contains("0:10:00"), "{t}");
    assert!(t.contains(&hex::encode(CONTENT.0)), "{t}");
    println!("{t}");
}

/// Reading never creates a ledger: a data directory without one is a clear error.
#[test]
fn no_ledger_is_a_clear_error_and_none_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for args in [&["report"][..], &["verify"], &["export", "--out", "x.json"]] {
        let r = ledger_in(&data, tmp.path(), args).fails();
        assert!(
            r.stderr.contains("no ledger in")
                && r.stderr.contains("this node has collected no receipts"),
            "{}",
            r.stderr
        );
    }
    assert!(!data.join(LEDGER_FILE).exists());
    assert!(!data.join(KEY_FILE).exists());
    assert!(!tmp.path().join("x.json").exists());
}

/// An operator's `UPDATE` of one entry's receipt bytes is found, and the message names the
/// entry.
#[test]
fn verify_passes_then_finds_a_tampered_entry() {
    let f = fixture(3);
    let r = ledger(&f, &["verify"]).ok();
    assert!(r.stdout.contains("verifies: 12 entries"), "{}", r.stdout);
    let j = ledger(&f, &["verify", "--json"]).ok().json();
    assert_eq!(j["ok"], true);

    let db = rusqlite::Connection::open(f.data.join(LEDGER_FILE)).unwrap();
    let mut bytes: Vec<u8> = db
        .query_row("SELECT receipt FROM entries WHERE n = 5", [], |r| r.get(0))
        .unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    db.execute(
        "UPDATE entries SET receipt = ?1 WHERE n = 5",
        rusqlite::params![bytes],
    )
    .unwrap();
    drop(db);
    let r = ledger(&f, &["verify"]).fails();
    assert!(
        r.stderr.contains("entry 5: the hash chain breaks"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_export_verifies_alone_and_an_edited_one_does_not() {
    let f = fixture(3);
    let j = ledger(&f, &["export", "--out", "ledger.json", "--json"])
        .ok()
        .json();
    assert_eq!(j["entries"], 12);
    let file = f.cwd.join("ledger.json");
    // Checked alone: without the data directory's ledger.
    let elsewhere = f.cwd.join("empty");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let r = ledger_in(&elsewhere, &f.cwd, &["verify", "ledger.json"]).ok();
    assert!(r.stdout.contains("verifies: 12 entries"), "{}", r.stdout);

    let mut e: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let cdn = e["report"]["totals"]["cdn_bytes"].as_u64().unwrap();
    e["report"]["totals"]["cdn_bytes"] = (cdn + 1_000_000).into();
    std::fs::write(&file, serde_json::to_string(&e).unwrap()).unwrap();
    let r = ledger(&f, &["verify", "ledger.json"]).fails();
    assert!(
        r.stderr
            .contains("report.totals.cdn_bytes says 9000000, the entries give 8000000"),
        "{}",
        r.stderr
    );
}

/// 150 uploaders at 0.5 XLM/GB: two envelopes of 100 and 50 payments, sequences 100 and 101,
/// signed with the node key's seed from a file; verify checks them against the ledger, and
/// finds an altered amount and a wrong rate.
#[test]
fn stellar_envelopes_settle_the_ledger_and_verify_against_it() {
    let f = fixture(150);
    let seed: [u8; 32] = std::fs::read(f.data.join(KEY_FILE))
        .unwrap()
        .try_into()
        .unwrap();
    let secret = stellar_strkey::Unredacted(&stellar_strkey::ed25519::PrivateKey(seed));
    std::fs::write(f.cwd.join("secret"), format!("  {secret}\n")).unwrap();
    let r = ledger(
        &f,
        &[
            "export",
            "--stellar",
            "--rate",
            "0.5",
            "--sequence",
            "100",
            "--secret-file",
            "secret",
            "--out",
            "pay.txt",
        ],
    )
    .ok();
    assert!(
        r.stdout
            .contains("wrote pay.txt: 2 envelopes, 150 payments"),
        "{}",
        r.stdout
    );
    let text = std::fs::read_to_string(f.cwd.join("pay.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let mut paid = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let d = stellar::decode_envelope(l, Network::Public).unwrap();
        assert_eq!(d.payments.len(), [100, 50][i]);
        assert_eq!(d.sequence, 100 + i as i64);
        assert_eq!(d.source, f.broadcaster);
        assert_eq!((d.signatures, d.valid_signatures), (1, 1));
        assert_eq!(d.fee, 100 * d.payments.len() as u32);
        paid.extend(d.payments);
    }
    // Uploader i delivered (i+1) MB: (i+1) × 5,000 stroops at 0.5 XLM/GB; the broadcaster's
    // own uploads are not paid.
    for i in 0..150 {
        let k = key(i).verifying_key().to_bytes();
        let p = paid.iter().find(|p| p.destination == k).unwrap();
        assert_eq!(p.stroops, i64::from(i + 1) * 5_000);
    }
    assert!(!paid.iter().any(|p| p.destination == f.broadcaster));

    let r = ledger(&f, &["verify", "pay.txt", "--rate", "0.5"]).ok();
    assert!(
        r.stdout.contains("all signed by the source"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("every payment and the memo match"),
        "{}",
        r.stdout
    );

    // The wrong rate: another memo, other amounts.
    let r = ledger(&f, &["verify", "pay.txt", "--rate", "0.6"]).fails();
    assert!(
        r.stderr.contains("is not the settlement memo"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("the ledger owes"), "{}", r.stderr);

    // The second envelope rebuilt and signed again with one amount changed.
    let d = stellar::decode_envelope(lines[1], Network::Public).unwrap();
    let mut pays: Vec<Payment> = d.payments.clone();
    pays[7].stroops += 1;
    let params = ExportParams {
        source: d.source,
        first_sequence: d.sequence,
        fee_per_op: 100,
        memo_hash: d.memo_hash.unwrap(),
        network: Network::Public,
    };
    let env = stellar::build_envelopes(&params, &pays).unwrap().remove(0);
    let signing = SigningKey::from_bytes(&seed);
    let env = stellar::sign_envelope(&env, &signing, Network::Public).unwrap();
    std::fs::write(f.cwd.join("altered.txt"), format!("{}\n{env}\n", lines[0])).unwrap();
    let r = ledger(&f, &["verify", "altered.txt", "--rate", "0.5"]).fails();
    let who = account(&pays[7].destination);
    assert!(
        r.stderr
            .contains(&format!("envelope 2 (line 2, sequence 101): pays {who}")),
        "{}",
        r.stderr
    );

    // Alone (no --rate), the altered file is well-formed; checked for the wrong network, the
    // signatures are not the source's.
    ledger(&f, &["verify", "altered.txt"]).ok();
    let r = ledger(&f, &["verify", "pay.txt", "--network", "testnet"]).fails();
    assert!(
        r.stderr.contains("not the source's on the testnet network"),
        "{}",
        r.stderr
    );

    // A secret that is not the paying account's is refused; without one, the envelopes are
    // unsigned.
    let other = stellar_strkey::Unredacted(&stellar_strkey::ed25519::PrivateKey([9; 32]));
    let r = ledger(
        &f,
        &[
            "export",
            "--stellar",
            "--rate",
            "0.5",
            "--sequence",
            "100",
            "--secret",
            &other.to_string(),
            "--out",
            "other.txt",
        ],
    )
    .fails();
    assert!(r.stderr.contains("the secret key is for"), "{}", r.stderr);
    assert!(!f.cwd.join("other.txt").exists());
    ledger(
        &f,
        &[
            "export",
            "--stellar",
            "--rate",
            "0.5",
            "--sequence",
            "100",
            "--out",
            "u.txt",
        ],
    )
    .ok();
    let r = ledger(&f, &["verify", "u.txt", "--rate", "0.5"]).ok();
    assert!(r.stdout.contains("; unsigned"), "{}", r.stdout);

    // At one stroop per GB, every uploader (at most 150 MB) is owed less than a stroop.
    let r = ledger(
        &f,
        &[
            "export",
            "--stellar",
            "--rate",
            "0.0000001",
            "--sequence",
            "100",
            "--out",
            "z.txt",
        ],
    )
    .fails();
    assert!(r.stderr.contains("nothing to pay"), "{}", r.stderr);
    assert!(!f.cwd.join("z.txt").exists());
}

/// An nginx `combined` log line for `bytes` of the content.
fn nginx_line(n: usize, bytes: u64) -> String {
    format!(
        "203.0.113.{} - - [10/Nov/2026:10:00:{:02} +0000] \"GET /live/{}/seg/{n}-{}.ts HTTP/1.1\" \
         200 {bytes} \"-\" \"peercdn/0.1\"\n",
        n % 250,
        n % 60,
        hex::encode(CONTENT.0),
        n + 3
    )
}

/// A log whose lines add up to `total` bytes of the content.
fn nginx_log(total: u64) -> String {
    let parts = 8;
    (0..parts)
        .map(|n| {
            let b = total / parts + if n == 0 { total % parts } else { 0 };
            nginx_line(n as usize, b)
        })
        .collect()
}

#[test]
fn reconcile_agrees_within_the_tolerance_and_names_a_content_that_differs() {
    let f = fixture(3);
    let signed: u64 = CDN_BYTES.iter().sum();
    // 0.5 % more than signed (the CDN counts some bytes viewers never verified), and a line
    // nobody could read.
    let log = nginx_log(signed + signed / 200) + "this is not a log line\n";
    std::fs::write(f.cwd.join("access.log"), log).unwrap();
    let r = ledger(&f, &["reconcile", "--cdn-log", "access.log"]).ok();
    assert!(r.stdout.contains("agrees"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("1 line could not be read; the first, line 9")
            && r.stdout.contains("this is not a log line"),
        "{}",
        r.stdout
    );
    let j = ledger(&f, &["reconcile", "--cdn-log", "access.log", "--json"])
        .ok()
        .json();
    assert_eq!(j["contents"][0]["signed_bytes"], signed);
    assert_eq!(j["contents"][0]["logged_bytes"], signed + signed / 200);
    assert_eq!(j["bad_lines"], 1);

    // 10 % short.
    std::fs::write(f.cwd.join("short.log"), nginx_log(signed / 10 * 9)).unwrap();
    let r = ledger(&f, &["reconcile", "--cdn-log", "short.log"]).fails();
    assert!(
        r.stderr
            .contains(&format!("content {}", hex::encode(CONTENT.0)))
            && r.stderr.contains("-10.00 %"),
        "{}",
        r.stderr
    );
    // Within a tolerance of 15 %, it agrees.
    ledger(
        &f,
        &["reconcile", "--cdn-log", "short.log", "--tolerance", "15"],
    )
    .ok();
}

/// A CloudFront log names the host the viewer asked for, so hosts are compared too.
#[test]
fn reconcile_reads_cloudfront_logs_per_host() {
    let f = fixture(1);
    let signed: u64 = CDN_BYTES.iter().sum();
    let mut log = String::from(
        "#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) \
         cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) \
         x-edge-result-type x-edge-request-id x-host-header\n",
    );
    for (n, b) in [signed / 2, signed - signed / 2].iter().enumerate() {
        log.push_str(&format!(
            "2026-11-10\t10:00:0{n}\tLHR62-C2\t{b}\t203.0.113.9\tGET\td111.cloudfront.net\t\
             /live/{}/seg/{n}.ts\t200\t-\tpeercdn\t-\t-\tHit\tid{n}\t{CDN_HOST}\n",
            hex::encode(CONTENT.0)
        ));
    }
    std::fs::write(f.cwd.join("cf.log"), log).unwrap();
    let j = ledger(&f, &["reconcile", "--cdn-log", "cf.log", "--json"])
        .ok()
        .json();
    assert_eq!(j["format"], "CloudFront");
    assert_eq!(j["hosts"][0]["name"], CDN_HOST);
    assert_eq!(j["hosts"][0]["logged_bytes"], signed);
    assert_eq!(j["hosts"][0]["within_tolerance"], true);
}
