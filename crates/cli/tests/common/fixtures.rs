//! Ready-made set-ups used by several whole-process tests: a libtorrent seeder of a fresh tree,
//! a peercdn publisher of a fresh tree, a `peercdn get`.

use std::path::{Path, PathBuf};

use super::*;

/// A started seeder with its content.
pub struct Seeded {
    /// The seeding process.
    pub proc: Proc,
    /// The content's top directory.
    pub src: PathBuf,
    /// The .torrent.
    pub torrent: PathBuf,
    /// Its peer port on 127.0.0.1.
    pub port: u16,
}

impl Seeded {
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The .torrent path as a string.
    pub fn torrent_str(&self) -> &str {
        self.torrent.to_str().expect("utf-8 path")
    }
}

/// Makes a tree `d/seed/content` (data from `seed`), a v1 torrent of it with `piece` bytes per
/// piece, and a libtorrent seeder for it with the extra `seed` arguments.
pub fn lt_seeder(d: &Path, seed: u64, piece: u32, extra: &[&str]) -> Seeded {
    let src = make_tree(&d.join("seed"), "content", seed);
    let torrent = d.join("c.torrent");
    lt_create(&src, &torrent, Some(piece));
    let mut args = vec![
        "seed",
        "--torrent",
        torrent.to_str().expect("utf-8"),
        "--save",
    ];
    let save = d.join("seed");
    args.push(save.to_str().expect("utf-8"));
    args.extend_from_slice(extra);
    let (proc, port) = lt_start(d, "lt-seed", &args);
    Seeded {
        proc,
        src,
        torrent,
        port,
    }
}

/// Makes a tree `d/pub/NAME` and runs `peercdn publish` on it (extra arguments appended),
/// waiting for its port.
pub fn peercdn_publisher(d: &Path, name: &str, seed: u64, extra: &[&str]) -> Seeded {
    let src = make_tree(&d.join("pub"), name, seed);
    let torrent = d.join(format!("{name}.torrent"));
    let mut args = vec![
        "publish",
        src.to_str().expect("utf-8"),
        "-o",
        torrent.to_str().expect("utf-8"),
        "--port",
        "0",
    ];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn(
        "peercdn-publish",
        peercdn(&d.join("pc-publisher"), &args),
        &d.join("publisher.log"),
    );
    let port = peercdn_port(&mut proc);
    // Seeding (it checks its data after printing the port; the log is at `info`): before that
    // its swarm refuses connections, and a loaded CI machine once let a test dial in between
    // and read a close for an answer.
    wait_until(Duration::from_secs(60), "the publisher to seed", || {
        if let Ok(Some(st)) = proc.child.try_wait() {
            panic!("publish exited early ({st}):\n{}", proc.log_text());
        }
        proc.log_text().contains("download complete")
    });
    Seeded {
        proc,
        src,
        torrent,
        port,
    }
}

/// Starts `peercdn get SOURCE -o OUT --no-seed --port 0 [--peer P]… EXTRA…` with its own data
/// directory `d/pc-NAME` and log `d/NAME.log`.
pub fn peercdn_get(
    d: &Path,
    name: &str,
    source: &str,
    out: &Path,
    peers: &[String],
    extra: &[&str],
) -> Proc {
    peercdn_get_in(d, &format!("pc-{name}"), name, source, out, peers, extra)
}

/// [`peercdn_get`] with the data directory `d/DATA` (shared by runs that resume each other).
pub fn peercdn_get_in(
    d: &Path,
    data: &str,
    name: &str,
    source: &str,
    out: &Path,
    peers: &[String],
    extra: &[&str],
) -> Proc {
    let mut args = vec![
        "get",
        source,
        "-o",
        out.to_str().expect("utf-8"),
        "--no-seed",
        "--port",
        "0",
    ];
    for p in peers {
        args.push("--peer");
        args.push(p);
    }
    args.extend_from_slice(extra);
    Proc::spawn(
        name,
        peercdn(&d.join(data), &args),
        &d.join(format!("{name}.log")),
    )
}
