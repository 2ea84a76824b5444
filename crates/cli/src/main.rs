//! The `peercdn` binary: command-line parsing (clap), logging, progress bars, exit codes.
//!
//! Exit codes a script can rely on:
//! - 0: done (for `get --no-seed`: the download is complete and verified)
//! - 1: an error (bad input, unreadable file, I/O failure), or a `ledger verify` or `ledger
//!   reconcile` check that failed; the message says what
//! - 2: bad command-line usage (from clap)
//! - 3: the download stopped with an error (e.g. a full disk)
//! - 130: interrupted (Ctrl-C / SIGTERM); resume data was saved

mod broadcast;
mod channel;
mod config;
mod demo;
mod ledger;
mod node;
mod play;
mod search;
mod sim;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use peercdn_core::magnet::Magnet;
use peercdn_core::metainfo::Metainfo;
use peercdn_core::InfoHash;
use peercdn_engine::torrent::Source;
use peercdn_engine::units;

/// peercdn: a peer-to-peer CDN on the BitTorrent protocol.
#[derive(Parser, Debug)]
#[command(name = "peercdn", version, about)]
struct Cli {
    /// Log filter (e.g. `info`, `peercdn_engine=debug`); also RUST_LOG.
    #[arg(long, global = true, env = "PEERCDN_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// A self-contained tour on loopback: publish generated content on one node, download it on
    /// another from its ID alone, check every byte, print the speed.
    Demo {
        /// Size of the generated content (e.g. 64MiB, 1GiB).
        #[arg(long, default_value = "256MiB")]
        size: String,
        /// Keep the generated and downloaded files.
        #[arg(long)]
        keep: bool,
        /// Keep the live stream and its player page running after the report, until Ctrl-C.
        #[arg(long)]
        serve: bool,
    },
    /// Run the node: seed and download what it holds until stopped.
    Engine {
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Make a BitTorrent v1 .torrent from a file or directory, print its ID and magnet, seed it.
    Publish {
        /// File or directory to publish.
        path: PathBuf,
        /// Tracker announce URL (repeatable; each is its own tier).
        #[arg(long = "tracker")]
        trackers: Vec<String>,
        /// Web seed URL (BEP 19, repeatable).
        #[arg(long = "webseed")]
        webseeds: Vec<String>,
        /// Piece size (e.g. 256KiB, 1MiB); default: chosen from the total size.
        #[arg(long)]
        piece_size: Option<String>,
        /// Where to write the .torrent (default: NAME.torrent in the current directory).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Write the .torrent and exit without seeding (and without a catalogue record).
        #[arg(long)]
        no_seed: bool,
        #[command(flatten)]
        record: RecordArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Stream content: add it to the running engine (or start one) and print the playback URL,
    /// or open it in a player.
    Play {
        /// 40-hex content ID, `acestream://ID`, `magnet:?…`, or a .torrent file.
        source: String,
        /// Player command to start on the URL (e.g. "mpv" or "vlc --fullscreen").
        #[arg(long)]
        player: Option<String>,
        /// The engine's API.
        #[arg(long, env = "PEERCDN_ENGINE", default_value = "http://127.0.0.1:6878")]
        engine: String,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Broadcast a live MPEG-TS source: cut it into signed pieces at keyframes and let the
    /// swarm relay them. Runs an engine (same flags and API) that also ingests.
    Broadcast {
        /// The source: an MPEG-TS file (paced in real time), `-` (stdin), `udp://HOST:PORT`
        /// (unicast or multicast), or `http(s)://…` (a progressive TS stream).
        #[arg(long)]
        input: String,
        /// The stream's name (with the node key, it fixes the content ID).
        #[arg(long)]
        name: String,
        /// Restart a file input at its end (marks a discontinuity).
        #[arg(long = "loop")]
        looped: bool,
        /// Write the CDN layout (descriptor, live.m3u8, segments) into this directory.
        #[arg(long)]
        publish_dir: Option<PathBuf>,
        /// CDN base URL serving the publish directory (repeatable); put in the descriptor.
        #[arg(long = "cdn")]
        cdn: Vec<String>,
        /// Where viewers may also hand their receipts over HTTP (repeatable; put in the
        /// descriptor): this engine's API base URL as viewers reach it (the API must then listen
        /// where they can, with --http-bind and --access-token), or `self` for the URL it
        /// listens on. Viewers connected to the broadcaster hand theirs over the swarm anyway.
        #[arg(long = "collector")]
        collector: Vec<String>,
        /// Seconds to keep serving the last pieces and collecting the viewers' last receipts
        /// after the input ended.
        #[arg(long, default_value_t = 3)]
        linger: u64,
        /// Target piece duration in milliseconds (a new piece also starts at each keyframe).
        /// Relays forward each verified 16 KiB block at once; a piece is the unit of signing,
        /// of announcement and of where a player may start.
        #[arg(long, default_value_t = 250)]
        piece_ms: u32,
        /// How long pieces stay available, seconds.
        #[arg(long, default_value_t = 60)]
        window: u32,
        #[command(flatten)]
        record: RecordArgs,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Search: the engine asks its peers (one hop, up to 20, 1 s), then its catalogue of
    /// signed records (title, tags, description); best match first; all words must match.
    Search {
        /// Words to look for (none: list everything).
        words: Vec<String>,
        /// Only this category (e.g. sport).
        #[arg(long)]
        category: Option<String>,
        /// Only `vod` or `live`.
        #[arg(long)]
        kind: Option<String>,
        /// Only this language code (e.g. en).
        #[arg(long)]
        lang: Option<String>,
        /// At most this many results.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print the engine's JSON (every field of every record) instead of a table.
        #[arg(long)]
        json: bool,
        /// Search the engine's catalogue only: ask no peer.
        #[arg(long)]
        local: bool,
        /// The engine's API.
        #[arg(long, env = "PEERCDN_ENGINE", default_value = "http://127.0.0.1:6878")]
        engine: String,
    },
    /// Channels on the DHT: a publisher's catalogue records under its key, followed with no
    /// server (`list`, `subscribe KEY`, `unsubscribe KEY`).
    Channel {
        #[command(subcommand)]
        action: channel::ChannelCmd,
        /// Print the engine's JSON.
        #[arg(long, global = true)]
        json: bool,
        /// The engine's API.
        #[arg(
            long,
            global = true,
            env = "PEERCDN_ENGINE",
            default_value = "http://127.0.0.1:6878"
        )]
        engine: String,
    },
    /// Simulate a live stream's swarm on the real protocol core (deterministic, seeded):
    /// the goal scenario — 5 Mbit/s, source uplink 100 Mbit/s, viewer uplinks mean 1.5x the
    /// bitrate (30 % below it), half behind NAT, 40–200 ms RTT, 5 % churn per minute.
    /// Prints a table; writes a JSON report and SVG pictures on request.
    Sim(sim::SimOptions),
    /// The broadcaster's ledger of viewer-signed receipts (DATA_DIR/ledger.db, read only):
    /// `report`, `verify [FILE]`, `export --out FILE [--stellar …]`, `reconcile --cdn-log FILE`.
    /// Nothing is sent to any network.
    Ledger {
        #[command(subcommand)]
        action: ledger::LedgerCmd,
        #[command(flatten)]
        opts: ledger::LedgerArgs,
    },
    /// Download a torrent by ID (40 hex), magnet URI or .torrent file, with a progress bar.
    Get {
        /// 40-hex content ID, `acestream://ID`, `magnet:?…`, or a path to a .torrent file.
        source: String,
        /// Directory to save into (default: the current directory).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Exit once the download is complete instead of seeding.
        #[arg(long)]
        no_seed: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// What the catalogue record of published content says (P2P search finds content by it).
#[derive(Args, Debug, Clone, Default)]
struct RecordArgs {
    /// Title in the catalogue (default: the torrent's or the stream's name).
    #[arg(long)]
    title: Option<String>,
    /// Description in the catalogue.
    #[arg(long)]
    description: Option<String>,
    /// Tags, comma-separated or repeated (stored in lower case).
    #[arg(long = "tags", value_delimiter = ',')]
    tags: Vec<String>,
    /// Category (e.g. sport, movies, music).
    #[arg(long)]
    category: Option<String>,
    /// Language code (e.g. en).
    #[arg(long)]
    lang: Option<String>,
    /// Country code (e.g. gb).
    #[arg(long)]
    country: Option<String>,
}

impl RecordArgs {
    /// The record's description of content named `name`.
    fn describe(&self, name: &str) -> peercdn_core::catalog::Description {
        let low = |s: &Option<String>| s.as_deref().unwrap_or("").trim().to_lowercase();
        peercdn_core::catalog::Description {
            title: self.title.clone().unwrap_or_else(|| name.to_owned()),
            description: self.description.clone().unwrap_or_default(),
            tags: self
                .tags
                .iter()
                .map(|t| t.trim().to_lowercase())
                .filter(|t| !t.is_empty())
                .collect(),
            category: low(&self.category),
            lang: low(&self.lang),
            country: low(&self.country),
            ..Default::default()
        }
    }
}

/// Flags shared by every command that runs a node. Unset flags fall back to `PEERCDN_*`
/// environment variables, then to `peercdn.toml`, then to the defaults shown.
#[derive(Args, Debug, Clone)]
struct NodeArgs {
    /// Config file (default: $XDG_CONFIG_HOME/peercdn/peercdn.toml if it exists).
    #[arg(long, env = "PEERCDN_CONFIG")]
    config: Option<PathBuf>,
    /// TCP port for peers (0: any free port) [default: 8621].
    #[arg(long, env = "PEERCDN_PORT")]
    port: Option<u16>,
    /// Address to listen on for peers [default: `::`, IPv6 and IPv4 (dual stack); `0.0.0.0` on a
    /// host without IPv6]. The DHT and LSD are IPv4: on `::` they use `0.0.0.0`.
    #[arg(long, env = "PEERCDN_BIND")]
    bind: Option<std::net::IpAddr>,
    /// Data directory (node key, resume data) [default: $XDG_DATA_HOME/peercdn].
    #[arg(long, env = "PEERCDN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Peer to dial, HOST:PORT (repeatable).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Upload limit (e.g. 500KiB, 2MB, 8mbit; 0 = none).
    #[arg(long, env = "PEERCDN_UPLOAD_LIMIT")]
    upload_limit: Option<String>,
    /// Download limit (e.g. 500KiB, 2MB, 8mbit; 0 = none).
    #[arg(long, env = "PEERCDN_DOWNLOAD_LIMIT")]
    download_limit: Option<String>,
    /// Turn the mainline DHT off (it is on by default, on its own UDP port: --dht-port).
    #[arg(long, env = "PEERCDN_NO_DHT")]
    no_dht: bool,
    /// DHT bootstrap node HOST:PORT (repeatable): a private DHT of these nodes only, instead
    /// of the public routers. Any peercdn node can serve as one.
    #[arg(long = "dht-bootstrap")]
    dht_bootstrap: Vec<String>,
    /// Turn Local Service Discovery off (BEP 14 multicast on the LAN; on by default, always
    /// off when bound to a loopback address).
    #[arg(long, env = "PEERCDN_NO_LSD")]
    no_lsd: bool,
    /// Do not map the peer port on the router (UPnP IGD, else PCP or NAT-PMP; it stays off on
    /// a loopback address). The outcome is printed as a `port mapping:` line.
    #[arg(long, env = "PEERCDN_NO_UPNP")]
    no_upnp: bool,
    /// Refuse catalogue records (search) signed by this publisher key, 64 hex (repeatable;
    /// records already held from it are dropped).
    #[arg(long = "deny-publisher")]
    deny_publishers: Vec<String>,
    /// Take catalogue records from peers only when signed by one of these publisher keys
    /// (repeatable; default: any key).
    #[arg(long = "allow-publisher")]
    allow_publishers: Vec<String>,
    /// Seconds between two rounds of receipts this node signs for what it received
    /// (accounting; default 30).
    #[arg(long, env = "PEERCDN_RECEIPT_INTERVAL")]
    receipt_interval: Option<u64>,
    /// Peer connection encryption (MSE/PE): `prefer` dials with an obfuscated handshake and
    /// falls back to plain, and accepts both (default); `require` dials and accepts only
    /// RC4-encrypted connections; `plaintext` never encrypts.
    #[arg(long, env = "PEERCDN_ENCRYPTION")]
    encryption: Option<peercdn_engine::peer::Encryption>,
    /// uTP (BEP 29, LEDBAT) beside TCP on the peer port: `on` accepts both and dials TCP, then
    /// uTP (default); `prefer` dials uTP first, so that uploads yield to other traffic on the
    /// uplink; `off` is TCP only.
    #[arg(long, env = "PEERCDN_UTP")]
    utp: Option<peercdn_engine::session::UtpMode>,
    /// The DHT's UDP port [default: the peer port + 1 with uTP on (any free port when taken),
    /// else the peer port].
    #[arg(long, env = "PEERCDN_DHT_PORT")]
    dht_port: Option<u16>,
}

/// Flags of `peercdn engine` (and `play` when it starts an engine).
#[derive(Args, Debug, Clone)]
struct HttpArgs {
    /// HTTP API port (0: any free port) [default: 6878].
    #[arg(long, env = "PEERCDN_HTTP_PORT")]
    http_port: Option<u16>,
    /// HTTP API address [default: 127.0.0.1]; any other address requires --access-token.
    #[arg(long, env = "PEERCDN_HTTP_BIND")]
    http_bind: Option<std::net::IpAddr>,
    /// Serve the API on all addresses (as the Ace engine's --bind-all); requires --access-token.
    #[arg(long)]
    bind_all: bool,
    /// Token every API request must carry (`?token=` or `Authorization: Bearer`).
    #[arg(long, env = "PEERCDN_ACCESS_TOKEN")]
    access_token: Option<String>,
    /// A host name (besides the loopback ones) that API requests may name in `Host` when no
    /// access token is set; repeat or separate with commas. Others are refused (DNS rebinding).
    #[arg(
        long = "http-allow-host",
        env = "PEERCDN_HTTP_ALLOW_HOST",
        value_delimiter = ','
    )]
    http_allow_host: Vec<String>,
    /// Ace Stream TCP API port (HTTPAceProxy, aceproxy; 0: any free port) [default: 62062
    /// when the HTTP API has its default port; off otherwise unless given]. Loopback only
    /// unless --access-token is set.
    #[arg(long, env = "PEERCDN_ACE_TCP_PORT")]
    ace_tcp_port: Option<u16>,
    /// No Ace Stream TCP API.
    #[arg(long, conflicts_with = "ace_tcp_port")]
    no_ace_tcp: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Demo { size, keep, serve } => {
            demo::run(units::parse_size(&size).context("--size")?, keep, serve).await
        }
        Cmd::Engine { node, http } => node::engine(node, http).await,
        Cmd::Play {
            source,
            player,
            engine,
            node,
            http,
        } => play::play(node, http, source, engine, player).await,
        Cmd::Broadcast {
            input,
            name,
            looped,
            publish_dir,
            cdn,
            collector,
            linger,
            piece_ms,
            window,
            record,
            node,
            http,
        } => {
            let opts = broadcast::BroadcastOptions {
                record: record.describe(&name),
                input,
                name,
                looped,
                publish_dir,
                cdn,
                collector,
                linger: std::time::Duration::from_secs(linger),
                piece_ms,
                window_s: window,
            };
            broadcast::broadcast(node, http, opts).await
        }
        Cmd::Publish {
            path,
            trackers,
            webseeds,
            piece_size,
            output,
            no_seed,
            record,
            node,
        } => {
            let piece = piece_size
                .map(|s| units::parse_size(&s))
                .transpose()
                .context("--piece-size")?;
            let opts = node::PublishOptions {
                trackers,
                webseeds,
                piece_size: piece,
                output,
                no_seed,
                record,
            };
            node::publish(node, path, opts).await
        }
        Cmd::Search {
            words,
            category,
            kind,
            lang,
            limit,
            json,
            local,
            engine,
        } => {
            let opts = search::SearchOptions {
                words,
                category,
                kind,
                lang,
                limit,
                json,
                local,
                engine,
            };
            search::search(opts).await
        }
        Cmd::Channel {
            action,
            json,
            engine,
        } => channel::channel(action, &engine, json).await,
        Cmd::Ledger { action, opts } => {
            tokio::task::spawn_blocking(move || ledger::run(action, opts))
                .await
                .context("the ledger command panicked")?
        }
        Cmd::Sim(o) => {
            tokio::task::spawn_blocking(move || sim::run(o))
                .await
                .context("the simulation panicked")??;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Get {
            source,
            output,
            no_seed,
            node,
        } => {
            let (src, extra_peers) = parse_source(&source)?;
            node::get(node, src, extra_peers, output, no_seed).await
        }
    }
}

/// Reads a `get` argument: a .torrent path, a magnet, or a bare ID.
fn parse_source(s: &str) -> Result<(Source, Vec<SocketAddr>)> {
    if s.starts_with("magnet:") {
        let m = Magnet::parse(s).with_context(|| format!("bad magnet URI {s:?}"))?;
        let peers = m.peers.iter().filter_map(|p| p.parse().ok()).collect();
        return Ok((
            Source::Hash {
                info_hash: m.info_hash,
                name: m.name,
                trackers: m.trackers,
                web_seeds: m.web_seeds,
            },
            peers,
        ));
    }
    let path = PathBuf::from(s);
    if path.is_file() {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let m = Metainfo::from_bytes(&bytes)
            .with_context(|| format!("{} is not a valid .torrent", path.display()))?;
        return Ok((Source::Metainfo(Box::new(m)), vec![]));
    }
    match InfoHash::parse(s) {
        Ok(info_hash) => Ok((
            Source::Hash {
                info_hash,
                name: None,
                trackers: vec![],
                web_seeds: vec![],
            },
            vec![],
        )),
        Err(_) if s.ends_with(".torrent") => bail!("no such file: {s}"),
        Err(e) => bail!("{s:?} is neither a .torrent file, a magnet URI nor a content ID: {e}"),
    }
}
