//! Who the client is behind a reverse proxy. A connection from a trusted
//! proxy (`trusted-proxies`) carries its client's address in
//! `X-Forwarded-For`, each proxy on the way appending the address it was
//! called from; the client is the nearest address that no trusted proxy
//! holds, read from the right, so a client cannot pass for another by
//! writing the header itself. Per-address limits (sign-ups, failed logins,
//! connections) then count clients, not the proxy.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The networks whose connections are trusted to name their client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[IpNet]>);

/// A request's client address, as the listener found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Whether a request came straight from a trusted proxy, whose forwarding
/// headers (`X-Forwarded-For`, `X-Forwarded-Host`) are believed; anyone
/// else's are the client's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FromTrustedProxy(pub bool);

impl TrustedProxies {
    /// Parse addresses (`10.0.0.7`) and networks (`10.0.0.0/8`).
    pub fn parse(entries: &[String]) -> anyhow::Result<TrustedProxies> {
        let nets = entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(canonical_net)
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "trusted-proxies: `{e}` is neither an address nor a network (such as 10.0.0.0/8)"
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(TrustedProxies(nets.into()))
    }

    /// Whether `ip` is a trusted proxy's.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.into_iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Nothing further left can be believed.
                break;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// An address as proxies write it: `203.0.113.5`, `2001:db8::1`, or with a
/// port (`203.0.113.5:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

/// A network of IPv4 addresses written as IPv6 (`::ffff:10.0.0.0/104`) is
/// that IPv4 network, as peers and forwarded addresses are compared.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        other => other,
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_nearest_address_no_trusted_proxy_holds() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.1".into()]).unwrap();
        let proxy = ip("10.1.2.3");
        // Straight from a client: the header is the client's own words.
        assert_eq!(
            trusted.client(ip("198.51.100.9"), &headers(&["203.0.113.5"])),
            ip("198.51.100.9")
        );
        assert_eq!(
            trusted.client(proxy, &headers(&["203.0.113.5"])),
            ip("203.0.113.5")
        );
        // What the client wrote before its address does not count.
        assert_eq!(
            trusted.client(proxy, &headers(&["1.1.1.1, 203.0.113.5, 192.0.2.1"])),
            ip("203.0.113.5")
        );
        assert_eq!(
            trusted.client(proxy, &headers(&["1.1.1.1", "203.0.113.5:4711"])),
            ip("203.0.113.5")
        );
        assert_eq!(
            trusted.client(proxy, &headers(&["[2001:db8::1]:4711"])),
            ip("2001:db8::1")
        );
        // Garbage ends the walk at the last address believed.
        assert_eq!(
            trusted.client(proxy, &headers(&["203.0.113.5, nonsense, 10.9.9.9"])),
            ip("10.9.9.9")
        );
        // No header: the proxy itself.
        assert_eq!(trusted.client(proxy, &HeaderMap::new()), proxy);
        // A mapped IPv4 peer is the IPv4 address.
        assert_eq!(
            trusted.client(ip("::ffff:10.1.2.3"), &headers(&["203.0.113.5"])),
            ip("203.0.113.5")
        );
        // Nothing trusted: the header is never read.
        assert_eq!(
            TrustedProxies::default().client(proxy, &headers(&["203.0.113.5"])),
            proxy
        );
        // Proxies listed as IPv4-mapped IPv6 are the IPv4 ones.
        let mapped =
            TrustedProxies::parse(&["::ffff:127.0.0.1".into(), "::ffff:10.0.0.0/104".into()])
                .unwrap();
        for peer in ["127.0.0.1", "10.9.8.7", "::ffff:10.9.8.7"] {
            assert_eq!(
                mapped.client(ip(peer), &headers(&["203.0.113.5"])),
                ip("203.0.113.5"),
                "{peer}"
            );
        }
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.example".into()]).is_err());
    }
}
