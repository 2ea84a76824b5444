//! `pc_search`: catalogue records ([`crate::catalog::Record`]) travelling between peers over
//! BEP 10, in both swarms — the codec, the per-connection budget, and what a swarm tells the
//! engine.
//!
//! Messages (a bencoded dictionary; `t` says which):
//! - `{t: "p", r: [record…]}` — push: records the sender holds (its sample when the connection
//!   opens, then records new to it as they arrive: gossip);
//! - `{t: "q", q: qid, k: words, c: category, n: kind}` — a query (`c`, `n` optional);
//! - `{t: "r", q: qid, r: [record…], e: 1 when it is the last}` — results for a query.
//!
//! Each record travels as its own signed bytes (at most [`MAX_RECORD_LEN`]), at most
//! [`MAX_MSG_RECORDS`] per message, so no message passes 16 KiB plus its envelope. Records are
//! not verified here: the engine verifies each (a bad signature is the sender's fault and
//! closes the connection, [`crate::disconnect::ProtocolViolation::ForgedRecord`]).
//!
//! Budget ([`PeerBudget`]): a peer may push at most [`RECORD_BURST`] records at once and
//! [`RECORDS_PER_S`] per second after that (results to our queries are bounded by the engine
//! per query instead), and ask at most [`QUERY_BURST`] queries at once
//! and one per [`QUERY_INTERVAL`] after; what is over is dropped (and counted), not an error.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::handshake::Extension;
use super::peer::PeerRecord;
use crate::bencode::{self, OwnedValue};
use crate::catalog::{Kind, MAX_RECORD_LEN};
use crate::disconnect::{DisconnectReason, ProtocolViolation};
use crate::wire::Message;

/// The extension's name in the BEP 10 handshake.
pub const PC_SEARCH: &str = "pc_search";
/// The ID we ask peers to send `pc_search` messages with.
pub const OUR_PC_SEARCH_ID: u8 = 4;
/// Most records in one message.
pub const MAX_MSG_RECORDS: usize = 6;
/// Longest query text, bytes.
pub const MAX_QUERY_LEN: usize = 200;
/// Longest category in a query, bytes.
pub const MAX_QUERY_CATEGORY: usize = 32;
/// Records a peer may push at once.
pub const RECORD_BURST: f64 = 300.0;
/// Records per second a peer may push after its burst.
pub const RECORDS_PER_S: f64 = 20.0;
/// Queries a peer may ask at once.
pub const QUERY_BURST: f64 = 5.0;
/// One more query a peer may ask per this interval.
pub const QUERY_INTERVAL: Duration = Duration::from_secs(5);

/// A `pc_search` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchMsg {
    /// Records the sender holds (unverified here).
    Push(Vec<Bytes>),
    /// A query.
    Query {
        /// The asker's query ID (results carry it back).
        qid: u32,
        /// Words.
        text: String,
        /// Only this category ("" for any).
        category: String,
        /// Only this kind.
        kind: Option<Kind>,
    },
    /// Results for a query.
    Results {
        /// The query's ID.
        qid: u32,
        /// Matching records (unverified here).
        records: Vec<Bytes>,
        /// No more results follow.
        done: bool,
    },
}

/// Why a `pc_search` message does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchMsgError {
    /// Not bencode, or nested too deep or too wide.
    #[error("pc_search: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// A field is missing, of the wrong type or out of bounds.
    #[error("pc_search: bad field {0}")]
    Field(&'static str),
}

impl SearchMsg {
    /// The wire form (the payload of an extended message).
    pub fn encode(&self) -> Vec<u8> {
        let records =
            |r: &[Bytes]| OwnedValue::list(r.iter().map(|b| OwnedValue::bytes(b.to_vec())));
        match self {
            SearchMsg::Push(r) => OwnedValue::dict()
                .with("t", "p")
                .with("r", records(r))
                .build()
                .encode(),
            SearchMsg::Query {
                qid,
                text,
                category,
                kind,
            } => OwnedValue::dict()
                .with("t", "q")
                .with("q", i64::from(*qid))
                .with("k", text.as_str())
                .with_opt("c", (!category.is_empty()).then_some(category.as_str()))
                .with_opt("n", kind.map(Kind::as_str))
                .build()
                .encode(),
            SearchMsg::Results {
                qid,
                records: r,
                done,
            } => OwnedValue::dict()
                .with("t", "r")
                .with("q", i64::from(*qid))
                .with("r", records(r))
                .with("e", i64::from(*done))
                .build()
                .encode(),
        }
    }

    /// Parses a message (bounds checked: record count and length, query length).
    pub fn decode(payload: &[u8]) -> Result<SearchMsg, SearchMsgError> {
        let limits = bencode::Limits {
            max_depth: 3,
            max_items: 2 * MAX_MSG_RECORDS + 16,
        };
        let v = bencode::decode_with(payload, limits)?;
        let d = v.as_dict().ok_or(SearchMsgError::Field("dictionary"))?;
        let qid = || {
            d.get_int(b"q")
                .and_then(|q| u32::try_from(q).ok())
                .ok_or(SearchMsgError::Field("q"))
        };
        let records = || -> Result<Vec<Bytes>, SearchMsgError> {
            let list = d.get_list(b"r").ok_or(SearchMsgError::Field("r"))?;
            if list.len() > MAX_MSG_RECORDS {
                return Err(SearchMsgError::Field("r"));
            }
            list.iter()
                .map(|r| match r.as_bytes() {
                    Some(b) if !b.is_empty() && b.len() <= MAX_RECORD_LEN => {
                        Ok(Bytes::copy_from_slice(b))
                    }
                    _ => Err(SearchMsgError::Field("r")),
                })
                .collect()
        };
        match d.get_str(b"t").ok_or(SearchMsgError::Field("t"))? {
            "p" => Ok(SearchMsg::Push(records()?)),
            "r" => Ok(SearchMsg::Results {
                qid: qid()?,
                records: records()?,
                done: d.get_int(b"e").unwrap_or(0) != 0,
            }),
            "q" => {
                let text = d.get_str(b"k").ok_or(SearchMsgError::Field("k"))?;
                if text.len() > MAX_QUERY_LEN {
                    return Err(SearchMsgError::Field("k"));
                }
                let category = match d.get(b"c") {
                    None => "",
                    Some(c) => c
                        .as_str()
                        .filter(|c| c.len() <= MAX_QUERY_CATEGORY)
                        .ok_or(SearchMsgError::Field("c"))?,
                };
                let kind = match d.get(b"n") {
                    None => None,
                    Some(n) => Some(
                        n.as_str()
                            .and_then(Kind::parse)
                            .ok_or(SearchMsgError::Field("n"))?,
                    ),
                };
                Ok(SearchMsg::Query {
                    qid: qid()?,
                    text: text.to_owned(),
                    category: category.to_owned(),
                    kind,
                })
            }
            _ => Err(SearchMsgError::Field("t")),
        }
    }
}

/// Records as push messages of at most [`MAX_MSG_RECORDS`] each.
pub fn push_messages(records: &[Bytes]) -> Vec<SearchMsg> {
    records
        .chunks(MAX_MSG_RECORDS)
        .map(|c| SearchMsg::Push(c.to_vec()))
        .collect()
}

/// What a swarm tells the engine about `pc_search` on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchEvent {
    /// The peer's extension handshake says it speaks `pc_search` (send it a sample).
    Joined,
    /// A message within the peer's budget (records over it were dropped).
    Msg(SearchMsg),
}

/// A `pc_search` message from a peer: decoded and cut to its budget. A payload that does not
/// decode is a protocol violation (the caller closes the connection).
pub fn receive(
    payload: &[u8],
    rec: &mut PeerRecord,
    now: Instant,
) -> Result<Option<SearchEvent>, DisconnectReason> {
    let msg = SearchMsg::decode(payload)
        .map_err(|_| DisconnectReason::Protocol(ProtocolViolation::BadSearchMsg))?;
    Ok(rec.search.admit(msg, now).map(SearchEvent::Msg))
}

/// `msg` as the extended message the peer asked `pc_search` to come in, with its payload's
/// length; `None` when it does not speak it.
pub fn message(rec: &PeerRecord, msg: &SearchMsg) -> Option<(Message, usize)> {
    let id = rec.ext.id(Extension::PcSearch)?;
    let payload = msg.encode();
    let len = payload.len();
    Some((
        Message::Extended {
            id,
            payload: payload.into(),
        },
        len,
    ))
}

/// What the engine needs of a swarm to speak `pc_search` on its connections (both swarms
/// implement it).
pub trait SearchSwarm {
    /// Sends a message to a peer that speaks `pc_search`: its payload's length, or `None`
    /// when the peer does not speak it, or is gone.
    fn send_search(&mut self, key: super::PeerKey, msg: &SearchMsg) -> Option<usize>;
    /// The peers that speak `pc_search`.
    fn search_peers(&self) -> Vec<super::PeerKey>;
    /// A peer sent a record that does not verify: close the connection and ban the peer.
    fn forged_record(&mut self, key: super::PeerKey);
    /// The peer's address (`None` when it is gone).
    fn search_peer_addr(&self, key: super::PeerKey) -> Option<std::net::SocketAddr>;
}

/// A token bucket (also [`super::receipt`]'s).
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    pub(crate) tokens: f64,
    pub(crate) at: Instant,
}

impl Bucket {
    /// Takes up to `want` whole tokens (refilled at `per_s` up to `burst` since the last
    /// call); how many it got.
    pub(crate) fn take(&mut self, want: f64, burst: f64, per_s: f64, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * per_s).min(burst);
        self.at = now;
        let got = want.min(self.tokens.floor()).max(0.0);
        self.tokens -= got;
        got
    }
}

/// One connection's `pc_search` budget (see the module docs), and what was dropped.
#[derive(Debug, Clone)]
pub struct PeerBudget {
    records: Bucket,
    queries: Bucket,
    /// Records dropped over the budget.
    pub dropped_records: u64,
    /// Queries dropped over the budget.
    pub dropped_queries: u64,
}

impl PeerBudget {
    /// A full budget at `now`.
    pub fn new(now: Instant) -> PeerBudget {
        PeerBudget {
            records: Bucket {
                tokens: RECORD_BURST,
                at: now,
            },
            queries: Bucket {
                tokens: QUERY_BURST,
                at: now,
            },
            dropped_records: 0,
            dropped_queries: 0,
        }
    }

    /// A message from the peer, cut to its budget: pushed records beyond it are dropped, a
    /// query beyond it is dropped whole (`None`); results pass (the engine bounds them per
    /// query it asked).
    pub fn admit(&mut self, msg: SearchMsg, now: Instant) -> Option<SearchMsg> {
        let mut cut = |r: &mut Vec<Bytes>| {
            let got = self
                .records
                .take(r.len() as f64, RECORD_BURST, RECORDS_PER_S, now)
                as usize;
            self.dropped_records += (r.len() - got) as u64;
            r.truncate(got);
        };
        match msg {
            SearchMsg::Push(mut r) => {
                cut(&mut r);
                (!r.is_empty()).then_some(SearchMsg::Push(r))
            }
            // Results answer a query we asked: the engine takes them only for that query and
            // that peer, and only so many ([`SearchMsg::Results`] past the answer's cap are
            // dropped there); pushes must not starve them.
            r @ SearchMsg::Results { .. } => Some(r),
            q @ SearchMsg::Query { .. } => {
                let per_s = 1.0 / QUERY_INTERVAL.as_secs_f64();
                if self.queries.take(1.0, QUERY_BURST, per_s, now) >= 1.0 {
                    Some(q)
                } else {
                    self.dropped_queries += 1;
                    None
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock
mod tests {
    use super::*;

    fn rec(n: u8) -> Bytes {
        Bytes::from(vec![n; 100])
    }

    #[test]
    fn messages_round_trip() {
        let msgs = [
            SearchMsg::Push(vec![rec(1), rec(2)]),
            SearchMsg::Query {
                qid: 7,
                text: "evening news".into(),
                category: "news".into(),
                kind: Some(Kind::Live),
            },
            SearchMsg::Query {
                qid: u32::MAX,
                text: String::new(),
                category: String::new(),
                kind: None,
            },
            SearchMsg::Results {
                qid: 9,
                records: vec![rec(3)],
                done: true,
            },
        ];
        for m in msgs {
            assert_eq!(SearchMsg::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn out_of_bounds_messages_are_refused() {
        let too_many = SearchMsg::Push((0..=MAX_MSG_RECORDS as u8).map(rec).collect()).encode();
        assert_eq!(
            SearchMsg::decode(&too_many),
            Err(SearchMsgError::Field("r"))
        );
        let too_long = SearchMsg::Push(vec![Bytes::from(vec![0u8; MAX_RECORD_LEN + 1])]).encode();
        assert_eq!(
            SearchMsg::decode(&too_long),
            Err(SearchMsgError::Field("r"))
        );
        let long_query = SearchMsg::Query {
            qid: 1,
            text: "x".repeat(MAX_QUERY_LEN + 1),
            category: String::new(),
            kind: None,
        };
        assert_eq!(
            SearchMsg::decode(&long_query.encode()),
            Err(SearchMsgError::Field("k"))
        );
        for bad in [
            &b"d1:t1:xe"[..],
            b"d1:t1:qe",
            b"d1:q2:no1:t1:r1:rlee",
            b"d1:ki1e1:qi1e1:t1:qe",
            b"d1:ki1e1:n5:radio1:qi1e1:t1:qe",
            b"li1ee",
            b"",
        ] {
            assert!(
                SearchMsg::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let negative_qid = b"d1:k0:1:qi-1e1:t1:qe";
        assert_eq!(
            SearchMsg::decode(negative_qid),
            Err(SearchMsgError::Field("q"))
        );
    }

    #[test]
    fn push_messages_chunk() {
        let r: Vec<Bytes> = (0..13).map(rec).collect();
        let m = push_messages(&r);
        assert_eq!(m.len(), 3);
        assert_eq!(m[2], SearchMsg::Push(vec![rec(12)]));
    }

    #[test]
    fn the_budget_cuts_floods_and_refills() {
        let t0 = Instant::now();
        let mut b = PeerBudget::new(t0);
        let mut got = 0;
        for _ in 0..60 {
            if let Some(SearchMsg::Push(r)) =
                b.admit(SearchMsg::Push((0..6).map(rec).collect()), t0)
            {
                got += r.len();
            }
        }
        assert_eq!(got, RECORD_BURST as usize);
        assert_eq!(b.dropped_records, 360 - RECORD_BURST as u64);
        let results = SearchMsg::Results {
            qid: 1,
            records: vec![rec(1)],
            done: true,
        };
        assert_eq!(
            b.admit(results.clone(), t0),
            Some(results),
            "results are not pushes"
        );
        let later = t0 + Duration::from_millis(300);
        let Some(SearchMsg::Push(r)) = b.admit(SearchMsg::Push((0..6).map(rec).collect()), later)
        else {
            panic!("refilled")
        };
        assert_eq!(r.len(), 6, "0.3 s at 20 records/s");
        let q = SearchMsg::Query {
            qid: 1,
            text: "a".into(),
            category: String::new(),
            kind: None,
        };
        let asked = (0..10).filter(|_| b.admit(q.clone(), t0).is_some()).count();
        assert_eq!(asked, QUERY_BURST as usize);
        assert_eq!(b.dropped_queries, 10 - QUERY_BURST as u64);
        assert!(b.admit(q, t0 + QUERY_INTERVAL).is_some());
    }
}
