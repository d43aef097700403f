//! Where deliveries may go. By default only `https://` URLs whose host
//! resolves to public addresses; `webhooks.allow_private_networks` lifts
//! both rules, and hosts in `webhooks.allowed_hosts` are exempt from them.
//! A URL naming a non-public address literally is refused when the
//! endpoint is created; every connection checks the addresses a name
//! resolves to then (the [`GuardedResolver`]), so a name that later
//! resolves elsewhere (DNS rebinding) reaches nothing private.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::config::WebhooksConfig;

#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow_private: bool,
    allowed_hosts: Arc<Vec<String>>,
}

impl Policy {
    pub fn from_config(config: &WebhooksConfig) -> Self {
        Self {
            allow_private: config.allow_private_networks,
            allowed_hosts: Arc::new(
                config
                    .allowed_hosts
                    .iter()
                    .map(|h| h.trim().trim_matches(['[', ']']).to_ascii_lowercase())
                    .collect(),
            ),
        }
    }

    /// Whether `host` escapes the https and public-address rules.
    fn exempt(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        self.allow_private || self.allowed_hosts.contains(&host)
    }

    /// The URL, if a delivery may be sent to it; else why not.
    pub fn check_url(&self, raw: &str) -> Result<Url, String> {
        let url = Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err("the URL names no host".to_owned());
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the URL must not carry credentials".to_owned());
        }
        let exempt = self.exempt(host);
        match url.scheme() {
            "https" => {}
            "http" if exempt => {}
            "http" => {
                return Err(
                    "only https:// URLs are allowed (see webhooks.allowed_hosts)".to_owned(),
                )
            }
            other => return Err(format!("scheme {other:?} is not allowed; use https://")),
        }
        if !exempt {
            if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
                if !is_public(ip) {
                    return Err(format!(
                        "{ip} is not a public address (see webhooks.allow_private_networks)"
                    ));
                }
            }
        }
        Ok(url)
    }

    /// The resolver deliveries connect through.
    pub fn resolver(&self) -> GuardedResolver {
        GuardedResolver {
            policy: self.clone(),
        }
    }
}

/// Resolves with the system resolver, then keeps only the addresses the
/// policy allows: a name that resolves to nothing allowed fails to connect.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Policy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let exempt = policy.exempt(&host);
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| exempt || is_public(addr.ip()))
                .collect();
            if allowed.is_empty() {
                let refused: Box<dyn std::error::Error + Send + Sync> = format!(
                    "{host} resolves to no public address (see webhooks.allow_private_networks)"
                )
                .into();
                return Err(refused);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether `ip` is a globally routable unicast address: not loopback,
/// private, link-local (cloud metadata lives there), shared (CGNAT),
/// unspecified, broadcast, multicast, documentation or benchmarking space,
/// nor an IPv6 form of one of those.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local fc00::/7 and link-local fe80::/10.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // Documentation 2001:db8::/32.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // NAT64 well-known prefix 64:ff9b::/96, to an IPv4 address.
        || (first == 0x0064 && ip.segments()[1] == 0xff9b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(allow_private: bool, hosts: &[&str]) -> WebhooksConfig {
        let mut config = crate::config::Config::defaults()
            .expect("defaults")
            .webhooks;
        config.allow_private_networks = allow_private;
        config.allowed_hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
        config
    }

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
    }

    #[test]
    fn urls_must_be_https_and_public_unless_allowed() {
        let strict = Policy::from_config(&config(false, &[]));
        assert!(strict.check_url("https://hooks.example.com/x").is_ok());
        for (url, why) in [
            ("http://hooks.example.com/x", "plain http"),
            ("https://127.0.0.1/x", "loopback"),
            ("https://[::1]/x", "loopback v6"),
            ("https://169.254.169.254/latest", "metadata"),
            ("https://10.0.0.8/x", "private"),
            ("ftp://hooks.example.com/", "scheme"),
            ("https://user:pw@hooks.example.com/", "credentials"),
            ("not a url", "garbage"),
        ] {
            assert!(strict.check_url(url).is_err(), "{why}");
        }
        let open = Policy::from_config(&config(true, &[]));
        assert!(open.check_url("http://127.0.0.1:9000/x").is_ok());
        let listed = Policy::from_config(&config(false, &["127.0.0.1"]));
        assert!(listed.check_url("http://127.0.0.1:9000/x").is_ok());
        assert!(listed.check_url("http://10.0.0.1/x").is_err());
    }
}
