//! Shared helpers for whole-process tests: child processes that are killed when dropped,
//! port files, deterministic test data, and the libtorrent harness (`tests/interop/lt_peer.py`).
#![allow(dead_code)]

mod fixtures;
pub use fixtures::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) and reaped on drop, so no test leaks processes.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout+stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// Waits for exit with a deadline; panics with the log on timeout.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{} did not finish in {timeout:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM (clean stop) and waits.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        unsafe_free_kill(self.child.id(), "-TERM");
        self.wait(timeout)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -SIG pid` without unsafe code.
pub fn unsafe_free_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(sig).arg(pid.to_string()).status();
}

/// Polls a port file written atomically by a child.
pub fn wait_port_file(path: &Path, p: &mut Proc) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(port) = s.trim().parse() {
                return port;
            }
        }
        if let Ok(Some(st)) = p.child.try_wait() {
            panic!(
                "{} exited ({st}) before writing its port; log:\n{}",
                p.name,
                p.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} wrote no port file; log:\n{}",
            p.name,
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deterministic pseudo-random bytes (xorshift), fast enough for tens of MiB.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A multi-file tree under `root/name`: files of odd sizes in nested directories.
pub fn make_tree(root: &Path, name: &str, seed: u64) -> PathBuf {
    let top = root.join(name);
    let files: [(&str, usize); 4] = [
        ("video.ts", 9_437_185),
        ("sub/a.bin", 1_000_003),
        ("sub/deeper/b.bin", 3_333_333),
        ("readme.txt", 17),
    ];
    for (i, (rel, len)) in files.iter().enumerate() {
        let p = top.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, data(*len, seed + i as u64)).expect("write");
    }
    top
}

/// Asserts two directory trees hold the same files with the same bytes.
pub fn assert_same_tree(a: &Path, b: &Path) {
    if let Some(diff) = tree_diff(a, b) {
        panic!("{diff}");
    }
}

/// True when two trees hold the same files with the same bytes.
pub fn same_tree(a: &Path, b: &Path) -> bool {
    tree_diff(a, b).is_none()
}

/// What differs between two trees, if anything.
pub fn tree_diff(a: &Path, b: &Path) -> Option<String> {
    let mut fa = list(a);
    let mut fb = list(b);
    fa.sort();
    fb.sort();
    if fa != fb {
        return Some(format!(
            "file lists differ between {} and {}: {fa:?} vs {fb:?}",
            a.display(),
            b.display()
        ));
    }
    for rel in fa {
        let x = std::fs::read(a.join(&rel)).ok();
        let y = std::fs::read(b.join(&rel)).ok();
        if x.is_none() || x != y {
            return Some(format!("{} differs", rel.display()));
        }
    }
    None
}

fn list(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).expect("prefix").to_path_buf());
            }
        }
    }
    out
}

/// Path of the libtorrent harness.
pub fn lt_peer() -> PathBuf {
    std::env::var_os("PEERCDN_LT_PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/lt_peer.py")
        })
}

/// A `/usr/bin/python3 lt_peer.py ARGS…` command.
pub fn lt(args: &[&str]) -> Command {
    let mut c = Command::new("/usr/bin/python3");
    c.arg(lt_peer()).args(args);
    c
}

/// Runs `lt_peer.py create`, returns the info hash.
pub fn lt_create(path: &Path, out: &Path, piece: Option<u32>) -> String {
    let mut c = lt(&[
        "create",
        "--path",
        path.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    if let Some(p) = piece {
        c.args(["--piece-size", &p.to_string()]);
    }
    let o = c.output().expect("run lt_peer.py create");
    assert!(
        o.status.success(),
        "lt_peer create failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Starts a libtorrent peer (`seed` or `leech` with extra args) and waits for its port.
pub fn lt_start(dir: &Path, name: &str, args: &[&str]) -> (Proc, u16) {
    let port_file = dir.join(format!("{name}.port"));
    let mut c = lt(args);
    c.args(["--port-file", port_file.to_str().expect("utf8")]);
    let mut p = Proc::spawn(name, c, &dir.join(format!("{name}.log")));
    let port = wait_port_file(&port_file, &mut p);
    (p, port)
}

/// A `peercdn` command isolated on loopback with its own data dir.
pub fn peercdn(data_dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_peercdn"));
    c.args(args)
        .args(["--bind", "127.0.0.1", "--data-dir"])
        .arg(data_dir)
        .env("PEERCDN_LOG", "info");
    c
}

/// Picks a free TCP port on 127.0.0.1 (bind :0, read, release).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Waits until `cond` holds, or panics after `timeout` with `what`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads the "port: N" line a peercdn node prints once it listens.
pub fn peercdn_port(p: &mut Proc) -> u16 {
    let mut port = 0;
    wait_until(Duration::from_secs(30), "peercdn to print its port", || {
        if let Some(line) = p.log_text().lines().find(|l| l.starts_with("port: ")) {
            port = line[6..].trim().parse().unwrap_or(0);
        }
        if let Ok(Some(st)) = p.child.try_wait() {
            panic!("{} exited early ({st}):\n{}", p.name, p.log_text());
        }
        port != 0
    });
    port
}
