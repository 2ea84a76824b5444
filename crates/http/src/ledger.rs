//! Accounting over HTTP ([`peercdn_engine::receipts`], [`peercdn_engine::ledger`]):
//!
//! - `POST /api/v1/receipts` — the broadcaster's collector: a body of at most
//!   [`peercdn_core::receipt::MAX_BATCH`] signed receipts (a bencoded list of their
//!   bytes, [`peercdn_core::receipt::encode_batch`]) → `{"accepted", "duplicate", "refused",
//!   "results": [{"status": "new"|"duplicate"|"refused", "reason"}…]}` once the ledger judged
//!   them. A batch with a receipt that does not verify is refused whole (400, naming it). This
//!   route needs no access token (viewers' engines post to it; every receipt is signed and
//!   judged) but has a node-wide budget ([`RECEIPTS_BURST`], then [`RECEIPTS_PER_S`]; 429 over
//!   it) and a body limit, so no caller can make the ledger work without bound.
//! - `GET /api/v1/ledger` → `{"key", "account", "report": …, "receipts": {counters}}`: the
//!   node's key (hex, and as a Stellar account), what its ledger holds (the report of
//!   `peercdn ledger report --json`, or `null` with `"error"` when this node keeps none) and
//!   its receipt counters.
//! - `/metrics` series ([`render`]): receipts signed, received, accepted, duplicate, refused by
//!   reason, dropped, and the bytes of receipts sent.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use peercdn_core::receipt::{decode_batch, MAX_BATCH, MAX_RECEIPT_LEN};
use peercdn_engine::ledger::{stellar, Refusal, Taken};
use peercdn_engine::receipts::AccountStats;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// Receipts the collector takes at once, all callers together.
pub const RECEIPTS_BURST: f64 = 2048.0;
/// Receipts per second it takes after the burst.
pub const RECEIPTS_PER_S: f64 = 256.0;

/// The collector's path (public: no access token).
pub const RECEIPTS_PATH: &str = "/api/v1/receipts";

/// The node-wide budget of the collector route.
#[derive(Debug)]
pub struct Budget(Mutex<(f64, Instant)>);

impl Default for Budget {
    fn default() -> Self {
        #[allow(clippy::disallowed_methods)] // a rate limit reads the clock
        Budget(Mutex::new((RECEIPTS_BURST, Instant::now())))
    }
}

impl Budget {
    fn take(&self, n: usize) -> bool {
        #[allow(clippy::disallowed_methods)] // a rate limit reads the clock
        let now = Instant::now();
        let mut b = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let dt = now.saturating_duration_since(b.1).as_secs_f64();
        b.0 = (b.0 + dt * RECEIPTS_PER_S).min(RECEIPTS_BURST);
        b.1 = now;
        if b.0 >= n as f64 {
            b.0 -= n as f64;
            true
        } else {
            false
        }
    }
}

/// The accounting routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            RECEIPTS_PATH,
            post(receipts).layer(DefaultBodyLimit::max(MAX_BATCH * (MAX_RECEIPT_LEN + 8) + 2)),
        )
        .route("/api/v1/ledger", get(ledger))
}

async fn receipts(State(state): State<AppState>, body: Bytes) -> Response {
    let batch = match decode_batch(&body) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, format!("receipts refused: {e}"))
                .into_response()
        }
    };
    if !state.receipt_budget().take(batch.len()) {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "the collector is busy; send the receipts again later",
        )
        .into_response();
    }
    let accounts = state.session().accounts();
    accounts
        .stats
        .received
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let verdicts = match accounts.append_wait(batch).await {
        Ok(v) => v,
        Err(e) => return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
    };
    let count = |f: fn(&Result<Taken, Refusal>) -> bool| verdicts.iter().filter(|v| f(v)).count();
    let results: Vec<Value> = verdicts
        .iter()
        .map(|v| match v {
            Ok(Taken::New) => json!({ "status": "new" }),
            Ok(Taken::Duplicate) => json!({ "status": "duplicate" }),
            Err(r) => json!({ "status": "refused", "reason": r.label() }),
        })
        .collect();
    Json(json!({
        "accepted": count(|v| *v == Ok(Taken::New)),
        "duplicate": count(|v| *v == Ok(Taken::Duplicate)),
        "refused": count(|v| v.is_err()),
        "results": results,
    }))
    .into_response()
}

async fn ledger(State(state): State<AppState>) -> Response {
    let accounts = state.session().accounts();
    let key = accounts.identity().public();
    let mut out = json!({
        "key": hex::encode(key),
        "account": stellar::account_id(&key),
        "receipts": stats_json(&accounts.stats),
    });
    match accounts.report().await {
        Ok(r) => out["report"] = json!(r),
        Err(e) => {
            out["report"] = Value::Null;
            out["error"] = json!(e);
        }
    }
    Json(out).into_response()
}

fn stats_json(s: &AccountStats) -> Value {
    let refused: serde_json::Map<String, Value> = Refusal::ALL
        .iter()
        .zip(&s.refused)
        .map(|(r, n)| (r.label().to_string(), json!(n.load(Ordering::Relaxed))))
        .collect();
    json!({
        "signed": s.signed.load(Ordering::Relaxed),
        "sent_bytes": s.sent_bytes.load(Ordering::Relaxed),
        "received": s.received.load(Ordering::Relaxed),
        "accepted": s.accepted.load(Ordering::Relaxed),
        "duplicate": s.duplicate.load(Ordering::Relaxed),
        "refused": refused,
        "dropped": s.dropped.load(Ordering::Relaxed),
    })
}

/// The receipt counters in the Prometheus text format.
pub fn render(out: &mut String, s: &AccountStats) {
    let counters = [
        ("signed", "Receipts this node signed.", &s.signed),
        (
            "received",
            "Receipts received from peers and over HTTP (verified).",
            &s.received,
        ),
        ("accepted", "Receipts the ledger appended.", &s.accepted),
        (
            "duplicate",
            "Receipts the ledger already held (the same receipt twice).",
            &s.duplicate,
        ),
        (
            "dropped",
            "Receipts dropped: the ledger's queue was full, or it failed.",
            &s.dropped,
        ),
    ];
    for (what, help, n) in counters {
        let name = format!("peercdn_receipts_{what}_total");
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", n.load(Ordering::Relaxed));
    }
    let name = "peercdn_receipts_refused_total";
    let _ = writeln!(out, "# HELP {name} Receipts the ledger refused, by reason.");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (r, n) in Refusal::ALL.iter().zip(&s.refused) {
        let _ = writeln!(
            out,
            "{name}{{reason=\"{}\"}} {}",
            r.label(),
            n.load(Ordering::Relaxed)
        );
    }
    let name = "peercdn_receipt_sent_bytes_total";
    let _ = writeln!(
        out,
        "# HELP {name} Bytes of receipts this node sent to peers and collectors."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {}", s.sent_bytes.load(Ordering::Relaxed));
}
