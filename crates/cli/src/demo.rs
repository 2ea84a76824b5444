//! `peercdn demo`: a self-contained tour on loopback. Generates content, publishes it on one
//! node, downloads it on a second node that knows only the content ID and the first node's
//! address (metadata through ut_metadata, then data), checks every byte and prints the speed;
//! then broadcasts a live stream to a dozen viewer nodes that relay it to each other
//! ([`live`]).

mod live;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use peercdn_core::magnet::Magnet;
use peercdn_core::metainfo::Metainfo;
use peercdn_engine::create::{build_info, CreateOptions};
use peercdn_engine::session::{AddOptions, Session, SessionConfig};
use peercdn_engine::torrent::{Source, State};
use peercdn_engine::units::{format_bytes, format_rate};

/// Runs the demo with `size` bytes of content; keeps the files if `keep`; with `serve`, the
/// live stream and its player page stay up after the report until Ctrl-C.
pub async fn run(size: u64, keep: bool, serve: bool) -> Result<ExitCode> {
    let root = std::env::temp_dir().join(format!("peercdn-demo-{}", std::process::id()));
    let result = demo(&root, size, serve).await;
    if keep {
        eprintln!("files kept in {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

async fn demo(root: &Path, size: u64, serve: bool) -> Result<ExitCode> {
    let content = root.join("publisher").join("demo-content");
    println!(
        "1. generating {} of content in {}",
        format_bytes(size),
        content.display()
    );
    generate(&content, size)?;

    println!("2. hashing it into a BitTorrent v1 torrent");
    let bar = bytes_bar("hashing");
    let b = bar.clone();
    let path = content.clone();
    let info = tokio::task::spawn_blocking(move || {
        build_info(&path, &CreateOptions::default(), &mut |done, total| {
            b.set_length(total);
            b.set_position(done);
        })
    })
    .await??;
    bar.finish_and_clear();
    let m = Metainfo::new(info, vec![], vec![], Some("peercdn demo".into()), None);
    println!("   content ID {}", m.info_hash);
    println!("   {}", Magnet::from_metainfo(&m));

    let node = |name: &str, peers: Vec<SocketAddr>| SessionConfig {
        data_dir: root.join(name).join("data"),
        download_dir: root.join(name).join("downloads"),
        listen: "127.0.0.1:0".parse().expect("valid address"),
        static_peers: peers,
        upload_limit: 0,
        download_limit: 0,
        dht: None,
        receipt_interval: peercdn_engine::receipts::DEFAULT_INTERVAL,
        encryption: Default::default(),
        utp: Default::default(),
        dht_port: None,
    };
    let publisher = Session::start(node("publisher", vec![])).await?;
    let pub_dir = content.parent().map(PathBuf::from).unwrap_or_default();
    let id = m.info_hash;
    publisher.add(
        Source::Metainfo(Box::new(m)),
        AddOptions {
            save_dir: Some(pub_dir),
            ..Default::default()
        },
    );
    let seed_addr: SocketAddr = ([127, 0, 0, 1], publisher.listen_port()).into();
    println!("3. node A seeds it on {seed_addr}");

    println!("4. node B downloads it knowing only the content ID and node A's address");
    let viewer = Session::start(node("viewer", vec![seed_addr])).await?;
    let started = peercdn_engine::clock::now();
    let mut h = viewer.add(
        Source::Hash {
            info_hash: id,
            name: None,
            trackers: vec![],
            web_seeds: vec![],
        },
        AddOptions::default(),
    );
    let bar = bytes_bar("downloading");
    let deadline = started + Duration::from_secs(300);
    loop {
        let st = h.status.borrow_and_update().clone();
        bar.set_length(st.total_length.max(1));
        bar.set_position(st.have_bytes);
        match st.state {
            State::Seeding => break,
            State::Error(e) => bail!("download failed: {e}"),
            _ => {}
        }
        if peercdn_engine::clock::now() > deadline {
            bail!("download did not finish in 5 minutes");
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), h.status.changed()).await;
    }
    let secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    println!(
        "   done: {} in {:.2} s ({}), metadata included",
        format_bytes(size),
        secs,
        format_rate(size as f64 / secs)
    );
    let got = root.join("viewer").join("downloads").join("demo-content");
    println!("5. checking every byte");
    compare(&content, &got)?;
    println!("   identical. Both nodes stop now.");
    viewer.shutdown().await;
    publisher.shutdown().await;
    live::run(root, 6, &node, serve).await?;
    Ok(ExitCode::SUCCESS)
}

fn bytes_bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::new(1);
    let tmpl = format!("   {what} {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}}");
    bar.set_style(
        ProgressStyle::with_template(&tmpl).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Three files of pseudo-random bytes (a cheap xorshift: the demo measures the network path,
/// not a random number generator).
fn generate(dir: &Path, size: u64) -> Result<()> {
    std::fs::create_dir_all(dir.join("extras"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let parts = [
        ("movie.ts", size * 7 / 10),
        ("extras/trailer.ts", size * 2 / 10),
        ("extras/poster.bin", size / 10),
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    for (name, len) in parts {
        use std::io::Write;
        let path = dir.join(name);
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| path.display().to_string())?,
        );
        let mut left = len;
        while left > 0 {
            for chunk in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let bytes = x.to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            let n = left.min(buf.len() as u64) as usize;
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
        f.flush()?;
    }
    Ok(())
}

fn compare(a: &Path, b: &Path) -> Result<()> {
    for name in ["movie.ts", "extras/trailer.ts", "extras/poster.bin"] {
        let x = std::fs::read(a.join(name))?;
        let y = std::fs::read(b.join(name)).with_context(|| format!("{name} missing on node B"))?;
        if x != y {
            bail!("{name} differs");
        }
    }
    Ok(())
}
