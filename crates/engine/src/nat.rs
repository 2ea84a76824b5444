//! Port mapping on the home router, so a node behind NAT can be dialled (and relay): UPnP IGD
//! through `igd-next`, else PCP (RFC 6887) or NAT-PMP (RFC 6886) through `crab_nat` with the
//! default gateway. The mapper maps the peer port for TCP and UDP (uTP) to the same external
//! port when it is free and to any port otherwise, renews at half the lease, and removes both
//! mappings when stopped. What it learns — the external address, or why there is none — is
//! the node's reachability, shown by the API and the CLI (the session adds what incoming
//! connections prove).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use std::num::NonZeroU16;

use crab_nat::{InternetProtocol, PortMapping, PortMappingOptions, PortMappingType};
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
        /// How it was asked: `"upnp"`, `"pcp"` or `"nat-pmp"`.
        via: &'static str,
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
        Err(upnp) => {
            debug!("no UPnP mapping ({upnp}): PCP / NAT-PMP");
            let pmp = tokio::select! {
                r = map_pcp(bind_v4, port) => r,
                _ = &mut stopped => return,
            };
            match pmp {
                Ok(m) => return keep_pcp(m, tx, stopped).await,
                Err(pcp) => {
                    let why = format!("{upnp}; {pcp}");
                    info!("no port mapping: {why}");
                    let _ = tx.send(Reachability::Unmapped(why));
                    return;
                }
            }
        }
    };
    info!(%external, gateway = %gateway.addr, "port mapped (UPnP)");
    let _ = tx.send(Reachability::Mapped {
        external,
        gateway: gateway.addr,
        via: "upnp",
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
        warn!("no UDP mapping (uTP stays unreachable from outside): {e}");
    }
    Ok((gateway, local, SocketAddr::new(external_ip, external_port)))
}

/// The PCP or NAT-PMP mappings (TCP, UDP) and the address they give.
struct PcpMapped {
    tcp: PortMapping,
    udp: Option<PortMapping>,
    external: SocketAddr,
    gateway: SocketAddr,
    via: &'static str,
}

/// PCP, else NAT-PMP (`crab_nat` falls back when the gateway says it speaks only that), with
/// the default gateway: TCP on the same external port if it is free, UDP on the port TCP got.
async fn map_pcp(bind: Ipv4Addr, port: u16) -> Result<PcpMapped, String> {
    let gw = default_gateway().map_err(|e| format!("no PCP/NAT-PMP gateway: {e}"))?;
    let local_ip = if bind.is_unspecified() {
        local_ip_towards(SocketAddr::new(gw.into(), 5351))
            .map_err(|e| format!("no local address towards {gw}: {e}"))?
    } else {
        bind.into()
    };
    let internal = NonZeroU16::new(port).ok_or("port 0 cannot be mapped")?;
    let options = |external| PortMappingOptions {
        external_port: NonZeroU16::new(external),
        lifetime_seconds: Some(LEASE.as_secs() as u32),
        timeout_config: Some(crab_nat::TimeoutConfig {
            initial_timeout: Duration::from_millis(250),
            max_retries: 3,
            max_retry_timeout: Some(Duration::from_secs(2)),
        }),
    };
    let tcp = PortMapping::new(
        gw.into(),
        local_ip,
        InternetProtocol::Tcp,
        internal,
        options(port),
    )
    .await
    .map_err(|e| format!("no PCP/NAT-PMP mapping from {gw}: {e}"))?;
    let external_port = tcp.external_port().get();
    let udp = match PortMapping::new(
        gw.into(),
        local_ip,
        InternetProtocol::Udp,
        internal,
        options(external_port),
    )
    .await
    {
        Ok(m) => Some(m),
        Err(e) => {
            warn!("no UDP mapping (uTP stays unreachable from outside): {e}");
            None
        }
    };
    let (external_ip, via) = match tcp.mapping_type() {
        PortMappingType::Pcp { external_ip, .. } => (external_ip, "pcp"),
        PortMappingType::NatPmp => {
            let ip = crab_nat::natpmp::external_address(gw.into(), None)
                .await
                .map_err(|e| format!("the gateway did not tell its external address: {e}"))?;
            (IpAddr::V4(ip), "nat-pmp")
        }
    };
    Ok(PcpMapped {
        tcp,
        udp,
        external: SocketAddr::new(external_ip, external_port),
        gateway: SocketAddr::new(gw.into(), 5351),
        via,
    })
}

/// Says the mapping, renews it at half its lifetime, removes it when stopped.
async fn keep_pcp(
    mut m: PcpMapped,
    tx: watch::Sender<Reachability>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    info!(external = %m.external, gateway = %m.gateway, via = m.via, "port mapped");
    let _ = tx.send(Reachability::Mapped {
        external: m.external,
        gateway: m.gateway,
        via: m.via,
    });
    let half = Duration::from_secs(u64::from(m.tcp.lifetime().max(60) / 2));
    let mut renew = tokio::time::interval(half);
    renew.tick().await;
    loop {
        tokio::select! {
            _ = renew.tick() => {
                if let Err(e) = m.tcp.renew().await {
                    warn!("TCP port mapping not renewed: {e}");
                }
                if let Some(u) = m.udp.as_mut() {
                    if let Err(e) = u.renew().await {
                        warn!("UDP port mapping not renewed: {e}");
                    }
                }
            }
            _ = &mut stopped => break,
        }
    }
    for (name, mapping) in [("TCP", Some(m.tcp)), ("UDP", m.udp)] {
        if let Some(mapping) = mapping {
            match mapping.try_drop().await {
                Ok(()) => debug!("{name} port mapping removed"),
                Err((e, _)) => warn!("{name} port mapping not removed: {e}"),
            }
        }
    }
}

/// The IPv4 default gateway, from the kernel's routing table (`/proc/net/route`: the line
/// whose destination and mask are 0; addresses in hex, host byte order). Hand-written: no
/// crate we use reads it, and the format is one line of whitespace-separated fields.
fn default_gateway() -> std::io::Result<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route")?;
    parse_default_gateway(&table).ok_or_else(|| std::io::Error::other("no IPv4 default route"))
}

fn parse_default_gateway(table: &str) -> Option<Ipv4Addr> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dest, gw, mask) = (f.get(1)?, f.get(2)?, f.get(7)?);
        if *dest != "00000000" || *mask != "00000000" {
            return None;
        }
        let raw = u32::from_str_radix(gw, 16).ok()?;
        (raw != 0).then(|| Ipv4Addr::from(raw.to_le_bytes()))
    })
}

/// The local address the system would use to reach `to` (a connected UDP socket sends
/// nothing).
fn local_ip_towards(to: SocketAddr) -> std::io::Result<IpAddr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(to)?;
    Ok(socket.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/net/route` as Linux writes it: the default route's gateway, in host byte order.
    #[test]
    fn the_default_gateway_is_read_from_the_routing_table() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(
            parse_default_gateway(table),
            Some(Ipv4Addr::new(192, 168, 0, 1))
        );
        let no_default = "Iface\tDestination\tGateway\n\
                          eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(parse_default_gateway(no_default), None);
        assert_eq!(parse_default_gateway(""), None);
    }
}
