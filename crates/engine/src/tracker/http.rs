//! HTTP tracker client (waiting for the bencode decoder).

use super::{AnnounceRequest, AnnounceResponse, TrackerError};

pub(super) async fn announce(
    url: url::Url,
    _req: &AnnounceRequest,
) -> Result<AnnounceResponse, TrackerError> {
    Err(TrackerError::UnsupportedScheme(url.scheme().to_string()))
}
