//! The origins a mini-program's `http` capability may reach, as its manifest
//! lists them: scheme, host name, port and an optional path prefix. A URL is
//! allowed only when it falls under one of them exactly; nothing here
//! resolves names (the host's egress does, and checks every address).

use std::fmt;

use serde::Serialize;

/// `https`, or `http` where the operator allows it for that origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// One allowed origin, e.g. `https://booking.cityhospital.example` or
/// `https://api.example.org:8443/superapp/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub scheme: Scheme,
    /// A DNS name, lowercase, never an IP literal.
    pub host: String,
    pub port: u16,
    /// `/` for the whole origin, else a prefix that ends with `/`.
    pub path_prefix: String,
}

/// Why an origin or a URL was refused; the text names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("`{0}` is not a URL")]
    NotAUrl(String),
    #[error("`{0}`: the scheme must be https (or http where the operator allows it)")]
    Scheme(String),
    #[error("`{0}`: the host must be a DNS name, not an IP address")]
    IpLiteral(String),
    #[error("`{0}`: the host is not a valid DNS name")]
    BadHost(String),
    #[error("`{0}`: an origin has no user name, password, query or fragment")]
    Extra(String),
    #[error("`{0}`: a path prefix must end with `/`")]
    Prefix(String),
}

impl Origin {
    /// Parse an origin as a manifest writes it.
    pub fn parse(text: &str) -> Result<Origin, OriginError> {
        let url = url::Url::parse(text).map_err(|_| OriginError::NotAUrl(text.to_string()))?;
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(OriginError::Extra(text.to_string()));
        }
        let (scheme, host, port) = parts(&url, text)?;
        let path_prefix = url.path().to_string();
        if !path_prefix.ends_with('/') {
            return Err(OriginError::Prefix(text.to_string()));
        }
        Ok(Origin {
            scheme,
            host,
            port,
            path_prefix,
        })
    }

    /// `scheme://host:port`, the origin without its path prefix: what the
    /// access log names and what a request's assertion is addressed to.
    pub fn base(&self) -> String {
        base(self.scheme, &self.host, self.port)
    }

    /// Does `url` fall under this origin? The scheme, host and port must be
    /// the same and the path must start with the prefix.
    pub fn allows(&self, url: &Target) -> bool {
        self.scheme == url.scheme
            && self.host == url.host
            && self.port == url.port
            && url.path.starts_with(&self.path_prefix)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.base())?;
        if self.path_prefix != "/" {
            f.write_str(&self.path_prefix)?;
        }
        Ok(())
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A request URL taken apart, after the same checks as an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: url::Url,
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// The normalised path (dot segments removed), without the query.
    pub path: String,
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, OriginError> {
        let url = url::Url::parse(text).map_err(|_| OriginError::NotAUrl(text.to_string()))?;
        Target::from_url(url)
    }

    pub fn from_url(url: url::Url) -> Result<Target, OriginError> {
        let text = url.as_str().to_string();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OriginError::Extra(text));
        }
        let (scheme, host, port) = parts(&url, &text)?;
        let path = url.path().to_string();
        Ok(Target {
            scheme,
            host,
            port,
            path,
            url,
        })
    }

    /// `scheme://host[:port]`, as [`Origin::base`] spells it.
    pub fn base(&self) -> String {
        base(self.scheme, &self.host, self.port)
    }
}

/// `scheme://host`, with `:port` unless it is the scheme's default.
fn base(scheme: Scheme, host: &str, port: u16) -> String {
    if port == scheme.default_port() {
        format!("{}://{host}", scheme.name())
    } else {
        format!("{}://{host}:{port}", scheme.name())
    }
}

fn parts(url: &url::Url, text: &str) -> Result<(Scheme, String, u16), OriginError> {
    let scheme = match url.scheme() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return Err(OriginError::Scheme(text.to_string())),
    };
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {
            return Err(OriginError::IpLiteral(text.to_string()))
        }
        None => return Err(OriginError::BadHost(text.to_string())),
    };
    // The URL parser turns `0x7f.1` and friends into IPv4 hosts already;
    // what is left must be a plain DNS name.
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let trimmed = host.strip_suffix('.').unwrap_or(&host);
    if trimmed.len() > 253 || !trimmed.split('.').all(label_ok) {
        return Err(OriginError::BadHost(text.to_string()));
    }
    let port = url.port().unwrap_or(scheme.default_port());
    Ok((scheme, trimmed.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_ports_and_prefixes() {
        let o = Origin::parse("https://Booking.Example.org").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("booking.example.org", 443));
        assert_eq!(o.path_prefix, "/");
        assert_eq!(o.to_string(), "https://booking.example.org");
        let o = Origin::parse("https://api.example.org:8443/superapp/").unwrap();
        assert_eq!(o.port, 8443);
        assert_eq!(o.to_string(), "https://api.example.org:8443/superapp/");
        assert_eq!(o.base(), "https://api.example.org:8443");
    }

    #[test]
    fn origins_refuse_ip_literals_other_schemes_and_extras() {
        for (text, want) in [
            ("https://127.0.0.1", "IP address"),
            ("https://[::1]:8080", "IP address"),
            ("https://0x7f.1", "IP address"),
            ("https://2130706433", "IP address"),
            ("ftp://example.org", "scheme"),
            ("file:///etc/passwd", "scheme"),
            ("https://user:pw@example.org", "user name"),
            ("https://example.org/?q=1", "query"),
            ("https://example.org/api", "end with"),
            ("example.org", "not a URL"),
        ] {
            let e = Origin::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn a_url_is_allowed_only_under_its_origin() {
        let o = Origin::parse("https://api.example.org:8443/superapp/").unwrap();
        let allowed = |u: &str| o.allows(&Target::parse(u).unwrap());
        assert!(allowed("https://api.example.org:8443/superapp/slots?day=1"));
        assert!(allowed("https://API.example.org:8443/superapp/x/../y"));
        assert!(!allowed("https://api.example.org:8443/superapp/../admin"));
        assert!(!allowed("https://api.example.org/superapp/"), "other port");
        assert!(
            !allowed("http://api.example.org:8443/superapp/"),
            "other scheme"
        );
        assert!(!allowed("https://api.example.org.evil.test:8443/superapp/"));
        assert!(!allowed("https://api.example.org:8443/superapps"));
        assert!(Target::parse("https://u:p@api.example.org/").is_err());
    }
}
