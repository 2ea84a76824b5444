//! Settings: command-line flags over `PEERCDN_*` environment variables (clap reads both) over
//! `peercdn.toml` over built-in defaults.
//!
//! The file is `--config FILE` (or `PEERCDN_CONFIG`), else `$XDG_CONFIG_HOME/peercdn/peercdn.toml`
//! (`~/.config/peercdn/peercdn.toml`) when it exists. Unknown keys are an error, so a typo is
//! not silently ignored.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// `peercdn.toml`. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Peer port.
    pub port: Option<u16>,
    /// Peer listen address.
    pub bind: Option<IpAddr>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Peers dialled for every torrent.
    pub peers: Option<Vec<String>>,
    /// Upload limit, e.g. "2MB".
    pub upload_limit: Option<String>,
    /// Download limit.
    pub download_limit: Option<String>,
    /// Engine HTTP API port.
    pub http_port: Option<u16>,
    /// Engine HTTP API address.
    pub http_bind: Option<IpAddr>,
    /// Token required by the HTTP API.
    pub access_token: Option<String>,
    /// Run the DHT (default true).
    pub dht: Option<bool>,
    /// Private DHT bootstrap nodes.
    pub dht_bootstrap: Option<Vec<String>>,
    /// Run Local Service Discovery (default true).
    pub lsd: Option<bool>,
    /// Map the peer port on the router with UPnP IGD, else PCP or NAT-PMP (default true).
    pub upnp: Option<bool>,
    /// Publisher keys (64 hex) whose catalogue records are refused.
    pub deny_publishers: Option<Vec<String>>,
    /// If set, the only publisher keys whose records are taken from peers.
    pub allow_publishers: Option<Vec<String>>,
    /// Seconds between two rounds of receipts (accounting; default 30).
    pub receipt_interval: Option<u64>,
    /// Peer connection encryption: "prefer" (default), "require" or "plaintext".
    pub encryption: Option<String>,
    /// uTP beside TCP: "on" (default), "prefer" or "off".
    pub utp: Option<String>,
    /// The DHT's UDP port.
    pub dht_port: Option<u16>,
}

/// Loads the config file: `explicit` must exist; the default location may be absent.
pub fn load(explicit: Option<&Path>) -> Result<FileConfig> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match default_path() {
            Some(p) if p.is_file() => p,
            _ => return Ok(FileConfig::default()),
        },
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("bad config {}", path.display()))
}

fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("peercdn").join("peercdn.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("peercdn.toml");
        std::fs::write(
            &p,
            "port = 9000\npeers = [\"127.0.0.1:1\"]\nupload_limit = \"2MB\"\n",
        )
        .unwrap();
        let c = load(Some(&p)).unwrap();
        assert_eq!(c.port, Some(9000));
        assert_eq!(c.peers.unwrap(), vec!["127.0.0.1:1"]);
        std::fs::write(&p, "prot = 9000\n").unwrap();
        let e = load(Some(&p)).unwrap_err();
        assert!(format!("{e:#}").contains("prot"), "{e:#}");
        assert!(load(Some(&dir.path().join("missing.toml"))).is_err());
    }

    #[test]
    fn lsd_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("peercdn.toml");
        std::fs::write(&p, "lsd = false\n").unwrap();
        assert_eq!(load(Some(&p)).unwrap().lsd, Some(false));
        std::fs::write(&p, "port = 1\n").unwrap();
        assert_eq!(load(Some(&p)).unwrap().lsd, None);
    }
}
