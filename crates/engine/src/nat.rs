//! Port mapping on the home router, so a node behind NAT can be dialled (and relay): UPnP IGD
//! through `igd-next`. The mapper finds the gateway (SSDP on the LAN), maps the peer port for
//! TCP (and UDP, for the DHT) to the same external port when it is free and to any port
//! otherwise, renews the lease at half its life, and removes both mappings when stopped. What
//! it learns — the external address, or why there is none — is the node's reachability, shown
//! by the API and the CLI.
//!
//! Not done here yet: NAT-PMP/PCP, and learning reachability from peers (an incoming
//! connection from outside proves it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use igd_next::aio::tokio::Tokio;
use igd_next::aio::Gateway;
use igd_next::{PortMappingProtocol, SearchOptions};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Lease asked for each mapping (renewed at half of it).
pub const LEASE: Duration = Duration::from_secs(1800);
/// How long the gateway search waits for an answer.
pub const SEARCH_TIMEOUT: Duration = Duration::from_secs(3);
/// The mapping's description on the router.
const DESCRIPTION: &str = "peercdn";

/// What the node knows of its reachability through the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// Still looking for a gateway.
    Searching,
    /// Mapped: peers reach us at `external` (TCP and UDP).
    Mapped {
        /// Our address as the Internet sees it.
        external: SocketAddr,
        /// The router that holds the mapping.
        gateway: SocketAddr,
    },
    /// No mapping (no gateway answered, or it refused): why.
    Unmapped(String),
}

/// A running port mapper; [`PortMapper::stop`] removes the mappings.
#[derive(Debug)]
pub struct PortMapper {
    state: watch::Receiver<Reachability>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl PortMapper {
    /// Starts mapping `port` for the local address `bind` (a specific IPv4 address, or the
    /// wildcard: then the address that routes to the gateway).
    pub fn start(bind: IpAddr, port: u16) -> PortMapper {
        let (tx, state) = watch::channel(Reachability::Searching);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(bind, port, tx, stopped));
        PortMapper { state, stop, task }
    }

    /// The reachability now.
    pub fn reachability(&self) -> Reachability {
        self.state.borrow().clone()
    }

    /// A receiver of the reachability as it changes (for [`settled`]).
    pub fn watch(&self) -> watch::Receiver<Reachability> {
        self.state.clone()
    }

    /// Removes the mappings and stops.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Waits until the search ended one way or the other.
pub async fn settled(mut rx: watch::Receiver<Reachability>) -> Reachability {
    let r = rx
        .wait_for(|r| *r != Reachability::Searching)
        .await
        .map(|r| r.clone());
    r.unwrap_or_else(|_| Reachability::Unmapped("the mapper stopped".into()))
}

async fn run(
    bind: IpAddr,
    port: u16,
    tx: watch::Sender<Reachability>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let bind_v4 = match bind {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) if v6.is_unspecified() => Ipv4Addr::UNSPECIFIED,
        IpAddr::V6(_) => {
            let _ = tx.send(Reachability::Unmapped("UPnP IGD maps IPv4 only".into()));
            return;
        }
    };
    let mapped = tokio::select! {
        r = map(bind_v4, port) => r,
        _ = &mut stopped => return,
    };
    let (gateway, local, external) = match mapped {
        Ok(m) => m,
        Err(why) => {
            info!("no port mapping: {why}");
            let _ = tx.send(Reachability::Unmapped(why));
            return;
        }
    };
    info!(%external, gateway = %gateway.addr, "port mapped");
    let _ = tx.send(Reachability::Mapped {
        external,
        gateway: gateway.addr,
    });
    let mut renew = tokio::time::interval(LEASE / 2);
    renew.tick().await;
    loop {
        tokio::select! {
            _ = renew.tick() => {
                for proto in [PortMappingProtocol::TCP, PortMappingProtocol::UDP] {
                    if let Err(e) = gateway
                        .add_port(proto, external.port(), local, LEASE.as_secs() as u32, DESCRIPTION)
                        .await
                    {
                        warn!(?proto, "port mapping not renewed: {e}");
                    }
                }
            }
            _ = &mut stopped => break,
        }
    }
    for proto in [PortMappingProtocol::TCP, PortMappingProtocol::UDP] {
        match gateway.remove_port(proto, external.port()).await {
            Ok(()) => debug!(?proto, "port mapping removed"),
            Err(e) => warn!(?proto, "port mapping not removed: {e}"),
        }
    }
}

/// Finds the gateway and maps `port` (TCP, then UDP on the same external port): the gateway,
/// our local address and the external address.
async fn map(
    bind: Ipv4Addr,
    port: u16,
) -> Result<(Gateway<Tokio>, SocketAddr, SocketAddr), String> {
    let options = SearchOptions {
        bind_addr: SocketAddr::new(bind.into(), 0),
        timeout: Some(SEARCH_TIMEOUT),
        single_search_timeout: Some(SEARCH_TIMEOUT),
        ..SearchOptions::default()
    };
    let gateway = igd_next::aio::tokio::search_gateway(options)
        .await
        .map_err(|e| format!("no UPnP gateway: {e}"))?;
    let local_ip = if bind.is_unspecified() {
        local_ip_towards(gateway.addr)
            .map_err(|e| format!("no local address towards {}: {e}", gateway.addr))?
    } else {
        bind.into()
    };
    let local = SocketAddr::new(local_ip, port);
    let external_ip = gateway
        .get_external_ip()
        .await
        .map_err(|e| format!("the gateway did not tell its external address: {e}"))?;
    let lease = LEASE.as_secs() as u32;
    let external_port = match gateway
        .add_port(PortMappingProtocol::TCP, port, local, lease, DESCRIPTION)
        .await
    {
        Ok(()) => port,
        Err(e) => {
            debug!("the same external port was refused ({e}): any port");
            gateway
                .add_any_port(PortMappingProtocol::TCP, local, lease, DESCRIPTION)
                .await
                .map_err(|e| format!("the gateway refused a TCP mapping: {e}"))?
        }
    };
    if let Err(e) = gateway
        .add_port(
            PortMappingProtocol::UDP,
            external_port,
            local,
            lease,
            DESCRIPTION,
        )
        .await
    {
        warn!("no UDP mapping (the DHT stays unreachable from outside): {e}");
    }
    Ok((gateway, local, SocketAddr::new(external_ip, external_port)))
}

/// The local address the system would use to reach `to` (a connected UDP socket sends
/// nothing).
fn local_ip_towards(to: SocketAddr) -> std::io::Result<IpAddr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(to)?;
    Ok(socket.local_addr()?.ip())
}
