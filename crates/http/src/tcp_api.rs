//! The Ace Stream engine's TCP API (port 62062): the line protocol HTTPAceProxy, aceproxy and
//! their kin speak to an engine — `HELLOBG` → `HELLOTS`, `READY` → `AUTH`, `LOADASYNC` →
//! `LOADRESP`, `START` → `STATUS`/`STATE` lines then `START url=…` (an Ace playback URL of the
//! HTTP API), `EVENT livepos` once a second for live streams, `LIVESEEK` (Unix seconds: the
//! live stream goes on from the keyframe piece made then), `STOP`, `SHUTDOWN`.
//!
//! Each connection is one player's session: what its `START` started (a playback session of
//! the HTTP API, so the torrent `START` added goes away with it) ends on `STOP`, on another
//! `START` and when the connection closes. `SHUTDOWN` closes the connection, not the engine
//! (proxies send it when one of their clients leaves).
//!
//! Access: an engine without an access token takes connections from loopback only, with any
//! `READY`. With a token, a connection from another address must prove it the way Ace
//! clients prove their product key: `READY key=<token's part before '-'>-<sha1(request key
//! from HELLOTS + token)>` (HTTPAceProxy's `acekey` set to the token does exactly that).
//!
//! Bounds: [`MAX_CONNECTIONS`] at once (more are closed at once), lines up to
//! [`MAX_LINE`] bytes (a `RAW` torrent in base64), one command at a time per connection.
//!
//! Hand-written: no crate speaks this protocol; it is a few line formats.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use peercdn_core::InfoHash;
use peercdn_engine::live::LiveHandle;
use peercdn_engine::torrent::TorrentHandle;
use serde_json::json;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::ace::{self, Target};
use crate::source::Params;
use crate::state::{AppState, Playback, Stopped};

/// Connections served at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest line read (a `RAW` torrent, base64): longer closes the connection.
pub const MAX_LINE: usize = 4 << 20;
/// How long `START` waits for a torrent's metadata before it reports an error.
const START_WAIT: Duration = Duration::from_secs(60);
/// How long `LOADASYNC` waits for a torrent's metadata.
const LOAD_WAIT: Duration = Duration::from_secs(20);
/// What `LOADASYNC` and `START` answer for an ID still being looked for.
const STILL_LOOKING: &str = "this ID is still being looked for";
/// How often a playing session is sent `STATUS` (and `EVENT livepos` for live).
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// What the content of a `LOADASYNC` or `START` is named by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `TORRENT url`, `URL url`, `EFILE url`: a `.torrent` (or descriptor, or magnet) at a URL.
    Url(String),
    /// `INFOHASH hex`.
    Infohash(String),
    /// `PID content_id`: an Ace content ID; here the same as an infohash (or live ID).
    Pid(String),
    /// `RAW base64`: the `.torrent` itself.
    Raw(String),
}

/// One command line from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `HELLOBG [version=N]`.
    Hello,
    /// `READY [key=K]`.
    Ready {
        /// The product key proof, if any.
        key: Option<String>,
    },
    /// `LOADASYNC id KIND what …`: what the content holds.
    LoadAsync {
        /// The client's request ID, echoed in `LOADRESP`.
        request_id: String,
        /// The content.
        source: Source,
    },
    /// `START KIND what [file_indexes] …`.
    Start {
        /// The content.
        source: Source,
        /// The file to play (the first of `file_indexes`); none: the largest media file.
        file_index: Option<usize>,
    },
    /// `STOP`.
    Stop,
    /// `SHUTDOWN`.
    Shutdown,
    /// `GETCID …infohash=H…`: the content ID of an infohash.
    GetCid {
        /// The infohash given.
        infohash: Option<String>,
    },
    /// `LIVESEEK POS`: the live stream played goes on from Unix time `POS` (seconds, as
    /// `EVENT livepos` reports them).
    LiveSeek {
        /// Unix seconds.
        pos: u64,
    },
    /// `SETOPTIONS`, `EVENT`, `USERDATA`, `GETADURL`, …: needs no answer here.
    Ignored(String),
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but spaces.
    #[error("empty line")]
    Empty,
    /// A known command without what it needs.
    #[error("{0}: missing arguments")]
    Missing(&'static str),
    /// A content kind this engine does not know.
    #[error("unknown content kind {0:?}")]
    Kind(String),
    /// Not a command of the protocol.
    #[error("unknown command {0:?}")]
    Unknown(String),
}

/// Parses one line (without its line end).
pub fn parse_command(line: &str) -> Result<Command, ParseError> {
    let mut words = line.split_ascii_whitespace();
    let Some(verb) = words.next() else {
        return Err(ParseError::Empty);
    };
    let mut rest: Vec<&str> = words.take(16).collect();
    let kv = |rest: &[&str], key: &str| {
        rest.iter()
            .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(str::to_string)
    };
    Ok(match verb.to_ascii_uppercase().as_str() {
        "HELLOBG" => Command::Hello,
        "READY" => Command::Ready {
            key: kv(&rest, "key"),
        },
        "LOADASYNC" => {
            if rest.len() < 3 {
                return Err(ParseError::Missing("LOADASYNC"));
            }
            let request_id = rest.remove(0).to_string();
            Command::LoadAsync {
                request_id,
                source: source(rest[0], rest[1])?,
            }
        }
        "START" => {
            if rest.len() < 2 {
                return Err(ParseError::Missing("START"));
            }
            let file_index = rest
                .get(2)
                .and_then(|f| f.split(',').next())
                .and_then(|f| f.parse::<usize>().ok());
            Command::Start {
                source: source(rest[0], rest[1])?,
                file_index,
            }
        }
        "STOP" => Command::Stop,
        "SHUTDOWN" => Command::Shutdown,
        "GETCID" => Command::GetCid {
            infohash: kv(&rest, "infohash"),
        },
        "LIVESEEK" => Command::LiveSeek {
            pos: rest
                .first()
                .and_then(|p| p.parse().ok())
                .ok_or(ParseError::Missing("LIVESEEK"))?,
        },
        "SETOPTIONS" | "EVENT" | "USERDATA" | "GETADURL" | "SAVE" | "PLAYBACK" | "GETSTATUS" => {
            Command::Ignored(verb.to_ascii_uppercase())
        }
        other => return Err(ParseError::Unknown(other.chars().take(32).collect())),
    })
}

fn source(kind: &str, what: &str) -> Result<Source, ParseError> {
    let what = what.to_string();
    Ok(match kind.to_ascii_uppercase().as_str() {
        "TORRENT" | "URL" | "EFILE" => Source::Url(what),
        "INFOHASH" => Source::Infohash(what),
        "PID" | "CONTENT_ID" => Source::Pid(what),
        "RAW" => Source::Raw(what),
        other => return Err(ParseError::Kind(other.chars().take(32).collect())),
    })
}

/// The proof a client with product key `token` sends in `READY` after `HELLOTS key=request`.
pub fn ready_key(request: &str, token: &str) -> String {
    let prefix = token.split('-').next().unwrap_or("");
    let digest = Sha1::digest(format!("{request}{token}").as_bytes());
    format!("{prefix}-{}", hex::encode(digest))
}

/// Serves the TCP API on `listener` until the task is dropped; `http_base` is where the
/// HTTP API answers (`http://ADDR:PORT`), for the playback URLs `START` gives.
pub async fn serve(listener: TcpListener, state: AppState, http_base: String) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let http_base: Arc<str> = http_base.into();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    // Out of descriptors, for instance: try again shortly.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let (state, base) = (state.clone(), http_base.clone());
                conns.spawn(async move {
                    let mut c = Conn::new(state, base, peer);
                    if let Err(e) = c.run(stream).await {
                        tracing::debug!(%peer, "Ace TCP API connection: {e}");
                    }
                    c.stop().await;
                    drop(permit);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// What a connection plays.
enum Playing {
    Vod { h: TorrentHandle, session: String },
    Live { h: LiveHandle, session: String },
}

impl Playing {
    fn id(&self) -> InfoHash {
        match self {
            Playing::Vod { h, .. } => h.info_hash,
            Playing::Live { h, .. } => h.content_id(),
        }
    }
    fn session(&self) -> &str {
        match self {
            Playing::Vod { session, .. } | Playing::Live { session, .. } => session,
        }
    }
}

struct Conn {
    state: AppState,
    http_base: Arc<str>,
    peer: SocketAddr,
    /// The `key` of our `HELLOTS`, which a token's proof is made from.
    request_key: String,
    ready: bool,
    /// A `READY` that failed the token check: the connection closes.
    refused: bool,
    playing: Option<Playing>,
    /// When the `START` being prepared came (`None`: its `START url=` went out, or none).
    starting: Option<std::time::Instant>,
    /// The last `STATE` sent.
    last_state: Option<u8>,
}

type Reader = BufReader<tokio::io::ReadHalf<TcpStream>>;

impl Conn {
    fn new(state: AppState, http_base: Arc<str>, peer: SocketAddr) -> Conn {
        let mut b = [0u8; 5];
        let _ = getrandom::getrandom(&mut b);
        Conn {
            state,
            http_base,
            peer,
            request_key: hex::encode(b),
            ready: false,
            refused: false,
            playing: None,
            starting: None,
            last_state: None,
        }
    }

    async fn run(&mut self, stream: TcpStream) -> std::io::Result<()> {
        let token = self
            .state
            .config()
            .access_token
            .clone()
            .filter(|t| !t.is_empty());
        if token.is_none() && !self.peer.ip().is_loopback() {
            return Ok(());
        }
        let (r, mut w) = tokio::io::split(stream);
        let mut reader: Reader = BufReader::new(r);
        let mut partial = Vec::new();
        let mut tick = tokio::time::interval(STATUS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                line = next_line(&mut reader, &mut partial) => {
                    let Some(line) = line? else { return Ok(()) };
                    match parse_command(&line) {
                        Ok(Command::Shutdown) => return Ok(()),
                        Ok(cmd) => {
                            for l in self.command(cmd, token.as_deref()).await {
                                send(&mut w, &l).await?;
                            }
                            if self.refused {
                                return Ok(());
                            }
                        }
                        Err(ParseError::Empty) => {}
                        Err(e) => tracing::debug!(peer = %self.peer, "Ace TCP API: {e}"),
                    }
                }
                _ = tick.tick(), if self.playing.is_some() => {
                    for l in self.status_lines() {
                        send(&mut w, &l).await?;
                    }
                }
            }
        }
    }

    /// Carries out one command; returns the lines to answer.
    async fn command(&mut self, cmd: Command, token: Option<&str>) -> Vec<String> {
        match cmd {
            Command::Hello => {
                let port = url::Url::parse(&self.http_base)
                    .ok()
                    .and_then(|u| u.port())
                    .unwrap_or(6878);
                vec![format!(
                    "HELLOTS version={} version_code={} key={} http_port={port} bmode=0",
                    ace::ACE_API_VERSION,
                    ace::version_code(ace::ACE_API_VERSION),
                    self.request_key
                )]
            }
            Command::Ready { key } => {
                let ok = self.peer.ip().is_loopback()
                    || token
                        .is_some_and(|t| key.as_deref() == Some(&ready_key(&self.request_key, t)));
                if ok {
                    self.ready = true;
                    vec!["AUTH 1".into()]
                } else {
                    self.refused = true;
                    vec!["NOTREADY".into()]
                }
            }
            _ if !self.ready => vec!["NOTREADY".into()],
            Command::LoadAsync { request_id, source } => {
                let body = match self.load(&source).await {
                    Ok(v) => v,
                    Err(e) => json!({"status": 100, "message": e}),
                };
                // Clients split the line on spaces and join the rest: JSON without spaces,
                // names percent-encoded (as Ace engines send them).
                vec![format!("LOADRESP {request_id} {body}")]
            }
            Command::Start { source, file_index } => {
                self.stop().await;
                match self.start(&source, file_index).await {
                    Ok(()) => self.state_line(1).into_iter().collect(),
                    Err(e) => vec![
                        format!("STATUS main:err;1;{}", e.replace(['\r', '\n', ';'], " ")),
                        "STATE 6".into(),
                    ],
                }
            }
            Command::Stop => {
                self.stop().await;
                self.state_line(0).into_iter().collect()
            }
            Command::GetCid { infohash } => {
                // A content ID here is the infohash (or live ID) itself.
                let cid = infohash
                    .and_then(|h| InfoHash::parse(&h).ok())
                    .map(|ih| ih.to_hex())
                    .unwrap_or_default();
                vec![format!("##{cid}")]
            }
            Command::LiveSeek { pos } => {
                if let Some(player) = self.live_player() {
                    player.seek_to(pos.saturating_mul(1_000_000));
                }
                Vec::new()
            }
            Command::Shutdown | Command::Ignored(_) => Vec::new(),
        }
    }

    /// `STATE n` when it changes.
    fn state_line(&mut self, n: u8) -> Option<String> {
        (self.last_state != Some(n)).then(|| {
            self.last_state = Some(n);
            format!("STATE {n}")
        })
    }

    /// Finds or starts what `source` names, as `getstream` would.
    async fn resolve(&self, source: &Source) -> Result<Target, String> {
        let query = match source {
            Source::Infohash(id) | Source::Pid(id) => format!("id={}", enc(id)),
            Source::Url(u) if u.starts_with("magnet:") => format!("magnet={}", enc(u)),
            Source::Url(u) => format!("url={}", enc(u)),
            Source::Raw(data) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| format!("RAW: not base64: {e}"))?;
                let m = peercdn_core::metainfo::Metainfo::from_bytes(&bytes)
                    .map_err(|e| format!("RAW: not a torrent: {e}"))?;
                return Ok(ace::from_fetched(
                    &self.state,
                    crate::source::Fetched::Torrent(Box::new(m)),
                    None,
                ));
            }
        };
        let p = Params::parse(Some(&query));
        // Not `at_once`: never `Target::Pending` (`load` and `start` name it for the match).
        ace::resolve_target(&self.state, &axum::http::HeaderMap::new(), &p, false)
            .await
            .map_err(|e| e.message)
    }

    /// `LOADASYNC`: the content's files once its metadata is in (status 1: one file, 2:
    /// several, 0: no media file), or the error.
    async fn load(&self, source: &Source) -> Result<serde_json::Value, String> {
        match self.resolve(source).await? {
            Target::Pending { .. } => Err(STILL_LOOKING.into()),
            Target::Live { h, .. } => Ok(json!({
                "status": 1,
                "infohash": h.content_id().to_hex(),
                "checksum": h.content_id().to_hex(),
                "files": [[enc(&h.status().name.unwrap_or_default()), 0]],
            })),
            Target::Vod { h, .. } => {
                let files: Vec<serde_json::Value> = crate::stream::wait_files(&h, LOAD_WAIT)
                    .await
                    .map_err(|e| e.message)?
                    .iter()
                    .filter(|f| crate::stream::is_media(&f.path))
                    .map(|f| json!([enc(&f.path), f.index]))
                    .collect();
                let status = match files.len() {
                    0 => 0,
                    1 => 1,
                    _ => 2,
                };
                Ok(json!({
                    "status": status,
                    "infohash": h.info_hash.to_hex(),
                    "checksum": h.info_hash.to_hex(),
                    "files": files,
                }))
            }
        }
    }

    /// `START`: a playback session for what `source` names; its `START url=` goes out once
    /// the content can play ([`Self::status_lines`]).
    async fn start(&mut self, source: &Source, file_index: Option<usize>) -> Result<(), String> {
        let playing = match self.resolve(source).await? {
            Target::Pending { .. } => return Err(STILL_LOOKING.into()),
            Target::Vod { h, .. } => {
                let session = self.state.start_playback(Playback {
                    info_hash: h.info_hash,
                    file_index,
                    pid: None,
                    live: None,
                    pending: false,
                });
                Playing::Vod { h, session }
            }
            Target::Live { h, new } => {
                if new {
                    self.state.mark_owned(h.content_id());
                }
                let session = self.state.start_playback(Playback {
                    info_hash: h.content_id(),
                    file_index: None,
                    pid: None,
                    live: Some(crate::live::LiveSlot(crate::live::LivePlayer::new())),
                    pending: false,
                });
                Playing::Live { h, session }
            }
        };
        self.playing = Some(playing);
        self.starting = Some(peercdn_engine::clock::now());
        Ok(())
    }

    /// The player of the live stream this connection plays, if it plays one.
    fn live_player(&self) -> Option<std::sync::Arc<crate::live::LivePlayer>> {
        let Some(Playing::Live { h, session }) = &self.playing else {
            return None;
        };
        self.state
            .playback(&h.content_id(), session)
            .and_then(|pb| pb.live)
            .map(|slot| slot.0)
    }

    /// Ends what this connection plays: its playback session, and the content when `START`
    /// added it and nobody else plays it.
    async fn stop(&mut self) {
        self.starting = None;
        let Some(p) = self.playing.take() else {
            return;
        };
        let id = p.id();
        if let Stopped::Ended { last: true } = self.state.stop_playback(&id, p.session()) {
            let s = self.state.session();
            if !s.remove_live(&id).await {
                s.remove_with(&id, false).await;
            }
        }
    }

    /// Once a second while playing: `START url=` when the content can play (or an error past
    /// [`START_WAIT`]), `STATUS`, `STATE` when it changes and, for live, `EVENT livepos`.
    fn status_lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(p) = &self.playing else {
            return out;
        };
        let ready = match p {
            Playing::Vod { h, .. } => h.metainfo().is_some(),
            Playing::Live { h, .. } => h.buffer().is_some_and(|b| b.edge().is_some()),
        };
        if let Some(since) = self.starting {
            if ready {
                self.starting = None;
                let tok = ace::token_suffix(&self.state);
                let id = p.id().to_hex();
                let url = format!("{}/ace/r/{id}/{}{tok}", self.http_base, p.session());
                let live = matches!(p, Playing::Live { .. });
                out.push(format!(
                    "START url={url} infohash={id}{}",
                    if live { " stream=1" } else { "" }
                ));
            } else if peercdn_engine::clock::now().saturating_duration_since(since) > START_WAIT {
                self.starting = None;
                self.playing = None;
                out.push("STATUS main:err;1;the content did not come in time".into());
                out.extend(self.state_line(6));
                return out;
            }
        }
        let Some(p) = &self.playing else {
            return out;
        };
        let (status, state) = match p {
            Playing::Vod { h, .. } => {
                let st = h.status.borrow().clone();
                let progress = (st.progress() * 100.0).clamp(0.0, 100.0) as u32;
                let totals = format!(
                    "{progress};{progress};{};0;{};{};0;{};{};{}",
                    st.down_rate / 1024,
                    st.up_rate / 1024,
                    st.peers,
                    st.downloaded,
                    st.http_downloaded,
                    st.uploaded
                );
                if ready && self.starting.is_none() {
                    (format!("STATUS main:dl;{totals}"), 2)
                } else {
                    (format!("STATUS main:prebuf;{progress};0;{totals}"), 1)
                }
            }
            Playing::Live { h, .. } => {
                let st = h.status();
                let totals = format!(
                    "100;100;{};0;{};{};0;{};{};{}",
                    st.down_rate / 1024,
                    st.up_rate / 1024,
                    st.peers,
                    st.p2p_downloaded,
                    st.cdn_downloaded,
                    st.uploaded
                );
                let played = self.live_player().and_then(|p| p.played_timestamp_us());
                if let Some(b) = h.buffer() {
                    if let Some(pos) = livepos(&b, played) {
                        out.push(pos);
                    }
                }
                if ready {
                    (format!("STATUS main:dl;{totals}"), 2)
                } else {
                    (format!("STATUS main:prebuf;0;0;{totals}"), 1)
                }
            }
        };
        out.push(status);
        out.extend(self.state_line(state));
        out
    }
}

/// `EVENT livepos` from a live stream's window: Unix seconds of its first and newest held
/// pieces and of `played` (this session's player: what it last sent, µs), else of the
/// playhead, else the newest, as Ace engines send it.
fn livepos(b: &peercdn_engine::live::LiveBuffer, played: Option<u64>) -> Option<String> {
    let (first, last) = b.range()?;
    let ts = |i: u32| b.headers(i, 1).first().map(|h| h.timestamp_us / 1_000_000);
    let (first_ts, last_ts) = (ts(first)?, ts(last)?);
    let pos = played
        .map(|us| us / 1_000_000)
        .or_else(|| b.playhead().and_then(ts))
        .unwrap_or(last_ts);
    let (held, _) = b.held();
    Some(format!(
        "EVENT livepos last={last_ts} live_first={first_ts} pos={pos} first_ts={first_ts} \
         last_ts={last_ts} is_live=1 live_last={last_ts} buffer_pieces={held}"
    ))
}

/// Percent-encodes a query value (and a name in `LOADRESP`).
fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

async fn send(w: &mut tokio::io::WriteHalf<TcpStream>, line: &str) -> std::io::Result<()> {
    w.write_all(line.as_bytes()).await?;
    w.write_all(b"\r\n").await?;
    w.flush().await
}

/// The next line (`\n`-ended, `\r` trimmed; invalid UTF-8 replaced), `None` at the end.
/// Cancel-safe: what was read of a line stays in `partial`. A line past [`MAX_LINE`] is an
/// error (the connection closes).
async fn next_line(r: &mut Reader, partial: &mut Vec<u8>) -> std::io::Result<Option<String>> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(None);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if partial.len() + take > MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line too long",
            ));
        }
        partial.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            let line = String::from_utf8_lossy(partial).trim_end().to_string();
            partial.clear();
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_as_proxies_send_them() {
        assert_eq!(parse_command("HELLOBG version=3"), Ok(Command::Hello));
        assert_eq!(
            parse_command("READY key=n51LvQoTlJzNGaFxseRK-1b5c6e9f"),
            Ok(Command::Ready {
                key: Some("n51LvQoTlJzNGaFxseRK-1b5c6e9f".into())
            })
        );
        assert_eq!(parse_command("READY"), Ok(Command::Ready { key: None }));
        assert_eq!(
            parse_command("LOADASYNC 42 INFOHASH abcd 0 0 0"),
            Ok(Command::LoadAsync {
                request_id: "42".into(),
                source: Source::Infohash("abcd".into())
            })
        );
        assert_eq!(
            parse_command("START PID 0123 0 output_format=http"),
            Ok(Command::Start {
                source: Source::Pid("0123".into()),
                file_index: Some(0)
            })
        );
        assert_eq!(
            parse_command("START TORRENT http://x/a.torrent 2,3 0 0 0 0 output_format=http"),
            Ok(Command::Start {
                source: Source::Url("http://x/a.torrent".into()),
                file_index: Some(2)
            })
        );
        assert_eq!(parse_command("stop"), Ok(Command::Stop));
        assert_eq!(parse_command("   "), Err(ParseError::Empty));
        assert!(matches!(
            parse_command("START"),
            Err(ParseError::Missing(_))
        ));
        assert!(matches!(
            parse_command("START FOO x"),
            Err(ParseError::Kind(_))
        ));
        assert!(matches!(
            parse_command("DANCE"),
            Err(ParseError::Unknown(_))
        ));
        assert_eq!(
            parse_command("EVENT play"),
            Ok(Command::Ignored("EVENT".into()))
        );
        assert_eq!(
            parse_command("LIVESEEK 1700000000"),
            Ok(Command::LiveSeek { pos: 1_700_000_000 })
        );
        assert_eq!(
            parse_command("LIVESEEK"),
            Err(ParseError::Missing("LIVESEEK"))
        );
    }

    /// The proof as HTTPAceProxy computes it: the key's part before '-', then SHA-1 of the
    /// request key followed by the whole key.
    #[test]
    fn ready_key_is_acekey_style() {
        let k = ready_key("abc", "tok-en");
        assert!(k.starts_with("tok-"));
        assert_eq!(k.len(), 4 + 40);
        assert_eq!(
            k,
            format!("tok-{}", hex::encode(Sha1::digest(b"abctok-en")))
        );
    }

    proptest::proptest! {
        #[test]
        fn parser_takes_any_line(s in "\\PC{0,200}") {
            let _ = parse_command(&s);
        }
    }
}
