//! Which cluster a webhook batch comes from: the `/audit/{cluster}` path segment, else the
//! receiver's `cluster` setting, else the TCP peer address matched against `clusters_by_source`,
//! else `default`. Forwarding headers (X-Forwarded-For) are deliberately not trusted.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Cluster name used when nothing else names one.
pub const DEFAULT_CLUSTER: &str = "default";

/// An IP network: an address with a prefix length (a single address has the full length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a bare address. Host bits are masked off.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR (e.g. 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("invalid prefix length in {s:?}; must be 0..={max}")),
            },
        };
        Ok(Cidr { network: mask(addr, prefix), prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Resolves the cluster of a request. Built from config; cheap to query.
#[derive(Clone, Debug)]
pub struct ClusterResolver {
    fixed: Option<String>,
    /// Most specific network first.
    by_source: Vec<(Cidr, String)>,
}

impl ClusterResolver {
    /// Errors are `(key relative to the receiver's section, message)`.
    pub fn new(fixed: Option<&str>, by_source: &BTreeMap<String, String>) -> Result<ClusterResolver, (String, String)> {
        if let Some(c) = fixed {
            check_cluster_name(c).map_err(|m| ("cluster".to_string(), m))?;
        }
        let mut networks = Vec::with_capacity(by_source.len());
        for (source, cluster) in by_source {
            let key = format!("clusters_by_source.{source}");
            let cidr = Cidr::parse(source).map_err(|m| (key.clone(), m))?;
            check_cluster_name(cluster).map_err(|m| (key, m))?;
            networks.push((cidr, cluster.clone()));
        }
        networks.sort_by_key(|(c, _)| std::cmp::Reverse(c.prefix()));
        Ok(ClusterResolver {
            fixed: fixed.map(str::to_string),
            by_source: networks,
        })
    }

    /// The cluster for a request with optional path segment `from_path`, from `peer`.
    pub fn resolve<'a>(&'a self, from_path: Option<&'a str>, peer: IpAddr) -> &'a str {
        if let Some(c) = from_path {
            return c;
        }
        if let Some(c) = &self.fixed {
            return c;
        }
        self.by_source
            .iter()
            .find(|(net, _)| net.contains(peer))
            .map(|(_, c)| c.as_str())
            .unwrap_or(DEFAULT_CLUSTER)
    }
}

/// Cluster names end up in object keys, span attributes and URLs: keep them to a safe alphabet.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!("invalid cluster name {name:?}: must be 1 to 253 characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')) {
        return Err(format!(
            "invalid cluster name {name:?}: use letters, digits, '-', '_', '.' or ':'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_match_by_prefix() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped peers match IPv4 networks");
        assert!(Cidr::parse("10.1.2.3").unwrap().contains(ip("10.1.2.3")));
        assert!(!Cidr::parse("10.1.2.3").unwrap().contains(ip("10.1.2.4")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
    }

    #[test]
    fn path_beats_setting_beats_source_beats_default() {
        let map = BTreeMap::from([
            ("10.0.0.0/8".to_string(), "wide".to_string()),
            ("10.1.0.0/16".to_string(), "narrow".to_string()),
        ]);
        let by_source = ClusterResolver::new(None, &map).unwrap();
        assert_eq!(by_source.resolve(None, ip("10.1.0.1")), "narrow");
        assert_eq!(by_source.resolve(None, ip("10.2.0.1")), "wide");
        assert_eq!(by_source.resolve(None, ip("192.168.0.1")), DEFAULT_CLUSTER);
        assert_eq!(by_source.resolve(Some("p"), ip("10.1.0.1")), "p");
        let fixed = ClusterResolver::new(Some("prod"), &map).unwrap();
        assert_eq!(fixed.resolve(None, ip("10.1.0.1")), "prod");
        assert_eq!(fixed.resolve(Some("p"), ip("10.1.0.1")), "p");
    }

    #[test]
    fn cluster_names_are_checked() {
        assert!(check_cluster_name("prod-eu.1").is_ok());
        assert!(check_cluster_name("").is_err());
        assert!(check_cluster_name("a b").is_err());
        assert!(ClusterResolver::new(Some("a/b"), &BTreeMap::new()).is_err());
    }
}
