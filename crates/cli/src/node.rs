//! The commands that run a node (`engine`, `publish`, `get`): session set-up from flags,
//! progress display and shutdown on Ctrl-C / SIGTERM.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use peercdn_core::catalog::{Description, Kind, Record};
use peercdn_core::magnet::Magnet;
use peercdn_core::metainfo::Metainfo;
use peercdn_core::InfoHash;
use peercdn_engine::catalog::{Catalog, Refused};
use peercdn_engine::create::{build_info, CreateOptions};
use peercdn_engine::lsd::LsdError;
use peercdn_engine::nodekey::NodeKey;
use peercdn_engine::session::{AddOptions, Session, SessionConfig};
use peercdn_engine::torrent::{Source, State, TorrentHandle, TorrentStatus};
use peercdn_engine::units::{format_bytes, format_rate, parse_rate};

use crate::config::{self, FileConfig};
use crate::{HttpArgs, NodeArgs};

/// Exit code for a download that stopped with an error.
const EXIT_FAILED: u8 = 3;
/// Exit code after Ctrl-C / SIGTERM.
const EXIT_INTERRUPTED: u8 = 130;

/// A node's settings after flags, environment and config file are merged.
pub struct NodeSettings {
    /// The config file's contents (for the engine's HTTP settings).
    pub file: FileConfig,
    /// Peer listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Static peers.
    pub peers: Vec<SocketAddr>,
    /// Bytes/s, 0 = none.
    pub upload_limit: u64,
    /// Bytes/s, 0 = none.
    pub download_limit: u64,
    /// DHT: off, public, or a private bootstrap list.
    pub dht: Option<Option<Vec<String>>>,
    /// Local Service Discovery on (it stays off on a loopback bind address anyway).
    pub lsd: bool,
    /// UPnP port mapping on (off on a loopback bind address anyway).
    pub upnp: bool,
    /// Publisher keys whose catalogue records are refused.
    pub deny_publishers: Vec<[u8; 32]>,
    /// If set, the only publisher keys whose records are taken from peers.
    pub allow_publishers: Option<Vec<[u8; 32]>>,
    /// Time between two rounds of receipts (accounting).
    pub receipt_interval: std::time::Duration,
    /// Peer connection encryption.
    pub encryption: peercdn_engine::peer::Encryption,
    /// uTP beside TCP.
    pub utp: peercdn_engine::session::UtpMode,
    /// The DHT's UDP port (`None`: the default).
    pub dht_port: Option<u16>,
}

impl NodeSettings {
    /// Merges flags (and env) over the config file over defaults.
    pub fn resolve(node: &NodeArgs) -> Result<NodeSettings> {
        let file = config::load(node.config.as_deref())?;
        let port = node.port.or(file.port).unwrap_or(8621);
        let bind = node
            .bind
            .or(file.bind)
            .unwrap_or(std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED));
        let data_dir = data_dir(node.data_dir.as_ref(), &file);
        let mut peers = node.peers.clone();
        peers.extend(file.peers.clone().unwrap_or_default());
        let rate = |flag: &Option<String>, cfg: &Option<String>, name: &str| -> Result<u64> {
            match flag.as_ref().or(cfg.as_ref()) {
                Some(s) => parse_rate(s).with_context(|| format!("--{name} {s:?}")),
                None => Ok(0),
            }
        };
        Ok(NodeSettings {
            listen: SocketAddr::new(bind, port),
            data_dir,
            peers: resolve_peers(&peers)?,
            upload_limit: rate(&node.upload_limit, &file.upload_limit, "upload-limit")?,
            download_limit: rate(&node.download_limit, &file.download_limit, "download-limit")?,
            dht: if node.no_dht || file.dht == Some(false) {
                None
            } else if !node.dht_bootstrap.is_empty() {
                Some(Some(node.dht_bootstrap.clone()))
            } else {
                Some(file.dht_bootstrap.clone())
            },
            lsd: !node.no_lsd && file.lsd != Some(false),
            upnp: !node.no_upnp && file.upnp != Some(false),
            deny_publishers: publisher_keys(&node.deny_publishers, &file.deny_publishers)?,
            allow_publishers: {
                let allow = publisher_keys(&node.allow_publishers, &file.allow_publishers)?;
                let given = !node.allow_publishers.is_empty() || file.allow_publishers.is_some();
                given.then_some(allow)
            },
            receipt_interval: match node.receipt_interval.or(file.receipt_interval) {
                Some(0) => anyhow::bail!("--receipt-interval must be at least 1 second"),
                Some(s) => std::time::Duration::from_secs(s),
                None => peercdn_engine::receipts::DEFAULT_INTERVAL,
            },
            encryption: match (node.encryption, &file.encryption) {
                (Some(e), _) => e,
                (None, Some(s)) => s
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("config file: encryption: {e}"))?,
                (None, None) => Default::default(),
            },
            utp: match (node.utp, &file.utp) {
                (Some(u), _) => u,
                (None, Some(s)) => s
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("config file: utp: {e}"))?,
                (None, None) => Default::default(),
            },
            dht_port: node.dht_port.or(file.dht_port),
            file,
        })
    }
}

/// The data directory: `--data-dir` (or `PEERCDN_DATA_DIR`) over the config file's
/// `data_dir` over `$XDG_DATA_HOME/peercdn`.
pub fn data_dir(flag: Option<&PathBuf>, file: &FileConfig) -> PathBuf {
    flag.cloned()
        .or(file.data_dir.clone())
        .unwrap_or_else(default_data_dir)
}

fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("peercdn")
}

fn resolve_peers(list: &[String]) -> Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for p in list {
        let addrs = p
            .to_socket_addrs()
            .with_context(|| format!("--peer {p}: expected HOST:PORT"))?;
        out.extend(addrs.take(1));
    }
    Ok(out)
}

async fn start(settings: &NodeSettings, download_dir: PathBuf) -> Result<Session> {
    let config = SessionConfig {
        data_dir: settings.data_dir.clone(),
        download_dir,
        listen: settings.listen,
        static_peers: settings.peers.clone(),
        upload_limit: settings.upload_limit,
        download_limit: settings.download_limit,
        dht: settings.dht.clone(),
        receipt_interval: settings.receipt_interval,
        encryption: settings.encryption,
        utp: settings.utp,
        dht_port: settings.dht_port,
    };
    let session = Session::start(config).await?;
    session
        .catalog()
        .set_deny(settings.deny_publishers.clone())
        .context("cannot apply --deny-publisher")?;
    session
        .catalog()
        .set_allow(settings.allow_publishers.clone());
    if settings.lsd {
        match session.start_lsd() {
            Ok(()) => {}
            // Loopback: off by design, nothing to report.
            Err(LsdError::Loopback(_)) => {}
            Err(e) => eprintln!("warning: local service discovery is off: {e}"),
        }
    }
    // Scripts and tests read the port from this line.
    println!("port: {}", session.listen_port());
    if settings.upnp && !settings.listen.ip().is_loopback() {
        session.start_port_mapping();
        let s = session.clone();
        tokio::spawn(async move {
            // Scripts and tests read the outcome from this line.
            match s.port_mapping_settled().await {
                Some(peercdn_engine::nat::Reachability::Mapped {
                    external,
                    gateway,
                    via,
                }) => println!("port mapping: mapped {external} (gateway {gateway}, via {via})"),
                Some(peercdn_engine::nat::Reachability::Unmapped(why)) => {
                    println!("port mapping: not mapped: {why}")
                }
                _ => {}
            }
        });
    }
    Ok(session)
}

/// Publisher keys from flags (or, without flags, the config file): 64 hex digits each.
fn publisher_keys(flags: &[String], file: &Option<Vec<String>>) -> Result<Vec<[u8; 32]>> {
    let list = if flags.is_empty() {
        file.clone().unwrap_or_default()
    } else {
        flags.to_vec()
    };
    list.iter()
        .map(|k| {
            let mut key = [0u8; 32];
            hex::decode_to_slice(k.trim(), &mut key)
                .with_context(|| format!("publisher key {k:?} is not 64 hex digits"))?;
            Ok(key)
        })
        .collect()
}

/// Resolves when the process is asked to stop.
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A node with its HTTP API running in this process.
pub struct RunningEngine {
    /// The node.
    pub session: Session,
    /// `http://ADDR:PORT` of the API.
    pub base_url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl RunningEngine {
    /// Stops the API and every torrent (resume data saved).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        self.session.shutdown().await;
    }
}

/// Starts a node and its HTTP API; prints `port: N` and `http: URL`.
pub async fn start_engine(settings: &NodeSettings, http: &HttpArgs) -> Result<RunningEngine> {
    let dl = settings.data_dir.join("downloads");
    let session = start(settings, dl).await?;
    let restored = session.restore();
    if restored > 0 {
        eprintln!("resumed {restored} torrents");
    }
    let file = &settings.file;
    let ip = if http.bind_all {
        std::net::IpAddr::from([0, 0, 0, 0])
    } else {
        http.http_bind
            .or(file.http_bind)
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
    };
    let port = http.http_port.or(file.http_port).unwrap_or(6878);
    let config = peercdn_http::HttpConfig {
        bind: SocketAddr::new(ip, port),
        access_token: http.access_token.clone().or(file.access_token.clone()),
        allowed_hosts: http.http_allow_host.clone(),
        ..peercdn_http::HttpConfig::default()
    };
    // Refuses a public address without a token now, as an error, not later as a log line.
    let listener = peercdn_http::bind(&config).await?;
    let addr = listener.local_addr()?;
    let shown = if addr.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), addr.port())
    } else {
        addr
    };
    let base_url = format!("http://{shown}");
    let ace_tcp = ace_tcp_listener(http, port, ip, config.access_token.is_some()).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let s2 = session.clone();
    let server = tokio::spawn(async move {
        if let Err(e) = peercdn_http::serve_with_ace_tcp(s2, config, listener, ace_tcp, async {
            let _ = stopped.await;
        })
        .await
        {
            eprintln!("error: HTTP API: {e}");
        }
    });
    println!("http: {base_url}");
    Ok(RunningEngine {
        session,
        base_url,
        stop,
        server,
    })
}

/// The Ace TCP API's listener, if it is on (see `--ace-tcp-port`): on loopback unless a token
/// is set (then beside the HTTP API). A port in use is a warning, not an error: an Ace engine
/// may hold it, and the HTTP API works without it. Prints `ace-tcp: ADDR`.
async fn ace_tcp_listener(
    http: &HttpArgs,
    http_port: u16,
    http_ip: std::net::IpAddr,
    token: bool,
) -> Option<tokio::net::TcpListener> {
    if http.no_ace_tcp {
        return None;
    }
    let port = match (http.ace_tcp_port, http.http_port) {
        (Some(p), _) => p,
        (None, None) if http_port == 6878 => 62062,
        (None, _) => return None,
    };
    let ip = if token {
        http_ip
    } else {
        std::net::IpAddr::from([127, 0, 0, 1])
    };
    match tokio::net::TcpListener::bind(SocketAddr::new(ip, port)).await {
        Ok(l) => {
            if let Ok(a) = l.local_addr() {
                println!("ace-tcp: {a}");
            }
            Some(l)
        }
        Err(e) => {
            eprintln!("warning: Ace TCP API off: cannot listen on {ip}:{port}: {e}");
            None
        }
    }
}

/// `peercdn engine`.
pub async fn engine(node: NodeArgs, http: HttpArgs) -> Result<ExitCode> {
    let settings = NodeSettings::resolve(&node)?;
    let running = start_engine(&settings, &http).await?;
    stop_signal().await;
    running.stop().await;
    Ok(ExitCode::from(EXIT_INTERRUPTED))
}

/// `peercdn publish`.
/// What `peercdn publish` was asked for besides the path.
pub struct PublishOptions {
    /// Announce URLs (one tier each).
    pub trackers: Vec<String>,
    /// BEP 19 web seeds.
    pub webseeds: Vec<String>,
    /// Piece size, bytes.
    pub piece_size: Option<u64>,
    /// Where the .torrent goes.
    pub output: Option<PathBuf>,
    /// Write the .torrent only.
    pub no_seed: bool,
    /// What the catalogue record says.
    pub record: crate::RecordArgs,
}

pub async fn publish(node: NodeArgs, path: PathBuf, opts: PublishOptions) -> Result<ExitCode> {
    let PublishOptions {
        trackers,
        webseeds,
        piece_size,
        output,
        no_seed,
        record,
    } = opts;
    let settings = NodeSettings::resolve(&node)?;
    let path =
        std::fs::canonicalize(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let piece_length = piece_size
        .map(|p| u32::try_from(p).context("--piece-size too large"))
        .transpose()?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "hashing {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let hash_path = path.clone();
    let b = bar.clone();
    let info = tokio::task::spawn_blocking(move || {
        let opts = CreateOptions {
            piece_length,
            private: false,
        };
        build_info(&hash_path, &opts, &mut |done, total| {
            b.set_length(total);
            b.set_position(done);
        })
    })
    .await
    .context("hashing task failed")??;
    bar.finish_and_clear();
    let now = i64::try_from(peercdn_engine::clock::unix_secs()).ok();
    let tiers = trackers.into_iter().map(|t| vec![t]).collect();
    let m = Metainfo::new(
        info,
        tiers,
        webseeds,
        Some(format!("peercdn/{}", env!("CARGO_PKG_VERSION"))),
        now,
    );
    let out = output.unwrap_or_else(|| PathBuf::from(format!("{}.torrent", m.info.name)));
    std::fs::write(&out, m.to_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("id: {}", m.info_hash);
    println!("magnet: {}", Magnet::from_metainfo(&m));
    println!("torrent: {}", out.display());
    let mut desc = record.describe(&m.info.name);
    desc.size = m.info.total_length();
    desc.files = u32::try_from(m.info.files.len()).unwrap_or(u32::MAX);
    if no_seed {
        // The record goes into the data directory's catalogue all the same: an engine started
        // on it later (seeding the .torrent) lists it.
        let key = NodeKey::load_or_create(&settings.data_dir)?;
        let now = peercdn_engine::clock::unix_secs();
        let catalog = Catalog::open(Some(&settings.data_dir), now)?;
        said_record(catalog.publish(&key.signing_key(), m.info_hash, Kind::Vod, desc, now));
        return Ok(ExitCode::SUCCESS);
    }
    let save_dir = path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let session = start(&settings, save_dir.clone()).await?;
    publish_record(&session, m.info_hash, Kind::Vod, desc);
    let h = session.add(
        Source::Metainfo(Box::new(m)),
        AddOptions {
            save_dir: Some(save_dir),
            ..Default::default()
        },
    );
    follow(&session, h, true).await
}

/// Signs and keeps the catalogue record of content this node publishes, and says so (a
/// record that cannot be made is a warning: the content is published all the same).
pub fn publish_record(session: &Session, id: InfoHash, kind: Kind, desc: Description) {
    said_record(session.publish_record(id, kind, desc));
}

/// Prints what became of the node's own record.
fn said_record(r: Result<Record, Refused>) {
    match r {
        Ok(r) => println!(
            "record: {:?} signed by {} (seq {})",
            r.desc.title,
            r.publisher_hex(),
            r.seq
        ),
        Err(e) => eprintln!("warning: no catalogue record: {e}"),
    }
}

/// `peercdn get`.
pub async fn get(
    node: NodeArgs,
    source: Source,
    extra_peers: Vec<SocketAddr>,
    output: Option<PathBuf>,
    no_seed: bool,
) -> Result<ExitCode> {
    let save_dir = output.unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&save_dir)
        .with_context(|| format!("cannot create {}", save_dir.display()))?;
    let save_dir = std::fs::canonicalize(&save_dir)?;
    let session = start(&NodeSettings::resolve(&node)?, save_dir.clone()).await?;
    let h = session.add(
        source,
        AddOptions {
            save_dir: Some(save_dir),
            peers: extra_peers,
            ..Default::default()
        },
    );
    follow(&session, h, !no_seed).await
}

/// Shows progress until complete (then seeds if `seed`), an error, or a stop signal.
async fn follow(session: &Session, mut h: TorrentHandle, seed: bool) -> Result<ExitCode> {
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut announced_done = false;
    loop {
        let st = h.status.borrow_and_update().clone();
        bar.set_message(describe(&st));
        match &st.state {
            State::Error(e) => {
                bar.abandon();
                eprintln!("error: {e}");
                if e.is_disk_full() {
                    eprintln!(
                        "the disk is full: free some space and run the same command again \
                         (verified pieces are kept and not fetched twice)"
                    );
                }
                session.shutdown().await;
                return Ok(ExitCode::from(EXIT_FAILED));
            }
            State::Seeding if !announced_done => {
                announced_done = true;
                bar.println(format!(
                    "complete: {} ({})",
                    st.name.as_deref().unwrap_or("?"),
                    format_bytes(st.total_length)
                ));
                if !seed {
                    bar.finish_and_clear();
                    session.shutdown().await;
                    return Ok(ExitCode::SUCCESS);
                }
            }
            _ => {}
        }
        tokio::select! {
            r = h.status.changed() => if r.is_err() {
                bar.abandon();
                anyhow::bail!("the torrent task ended unexpectedly");
            },
            _ = &mut stop => {
                bar.abandon();
                eprintln!("stopping; saving resume data");
                session.shutdown().await;
                return Ok(ExitCode::from(EXIT_INTERRUPTED));
            }
        }
    }
}

fn describe(st: &TorrentStatus) -> String {
    let name = st.name.as_deref().unwrap_or("(metadata…)");
    match &st.state {
        State::FetchingMetadata => format!("{name}: fetching metadata, {} peers", st.peers),
        State::Checking => format!("{name}: checking existing data"),
        State::Seeding => format!(
            "{name}: seeding, {} peers, up {} ({} sent)",
            st.peers,
            format_rate(st.up_rate as f64),
            format_bytes(st.uploaded)
        ),
        State::Paused => format!("{name}: paused"),
        State::Error(e) => format!("{name}: error: {e}"),
        State::Downloading => {
            let left = st.total_length.saturating_sub(st.have_bytes);
            let eta = if st.down_rate > 0 {
                let s = left / st.down_rate.max(1);
                format!("{}:{:02}", s / 60, s % 60)
            } else {
                "-".into()
            };
            format!(
                "{name}: {:5.1}% {} of {}, down {}, up {}, {} peers, eta {eta}",
                st.progress() * 100.0,
                format_bytes(st.have_bytes),
                format_bytes(st.total_length),
                format_rate(st.down_rate as f64),
                format_rate(st.up_rate as f64),
                st.peers
            )
        }
    }
}
