//! Egress: the host's one way out to the network, for mini-programs'
//! requests to their providers' backends (the `http` capability).
//!
//! The host decides everything about a request but its path, headers and
//! body: the URL must fall under an origin the manifest lists; `https`
//! only, unless the operator allows plain `http` for that host and port;
//! the host resolves the name itself and refuses it when **any** address is
//! internal ([`addr::internal`]) unless the operator allows that exact
//! host; the connection goes to an address that was checked (the resolver
//! reqwest connects through is this module's, so there is no second
//! lookup); redirects are followed here, each checked again; no proxy from
//! the environment, no cookies, sizes capped, time bounded by the event,
//! and a per-app limit on concurrent requests and their rate.

pub mod addr;
mod dns;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use superapp_core::{Origin, Scheme, Target};

use dns::Lookups;

/// What the operator decides about outbound requests.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// `host:port` pairs that may be reached over plain `http`.
    pub plain_http: BTreeSet<String>,
    /// Host names that may resolve to internal addresses (a backend on the
    /// operator's own network, or a test's loopback server).
    pub private_hosts: BTreeSet<String>,
    /// Names the host resolves from this table instead of DNS, as
    /// `/etc/hosts` would; the addresses are checked like any others.
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    /// The longest any one request (with its redirects) may take.
    pub timeout: Duration,
    pub max_redirects: usize,
    /// Requests of one app in flight at once, over all its users.
    pub per_app_concurrency: usize,
    /// Requests one app may start per second (and in one burst).
    pub per_app_rate: u32,
}

/// Whether `pair` is a `host:port` pair as [`EgressConfig::plain_http`]
/// lists them: a host, a colon, a port number (1 to 65535: no request
/// goes to port 0).
pub fn is_host_port(pair: &str) -> bool {
    pair.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(['/', '@', ' '])
            && port.parse::<u16>().is_ok_and(|p| p != 0)
    })
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            plain_http: BTreeSet::new(),
            private_hosts: BTreeSet::new(),
            hosts: BTreeMap::new(),
            max_request_bytes: 1 << 20,
            max_response_bytes: 4 << 20,
            timeout: Duration::from_secs(10),
            max_redirects: 5,
            per_app_concurrency: 16,
            per_app_rate: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request was refused or failed, in the words the app is shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// Host policy forbids it (an unlisted origin, an internal address,
    /// plain http, a response over the cap).
    #[error("{0}")]
    Denied(String),
    /// The request is malformed (a bad URL, a forbidden header).
    #[error("{0}")]
    Invalid(String),
    /// The app's request budget is used up for now.
    #[error("{0}")]
    Limited(String),
    /// The backend did not answer (in time).
    #[error("{0}")]
    Unavailable(String),
}

/// One hop of a request as it goes into the audit log: which origin was
/// contacted, for what, and how it went.
#[derive(Debug, Clone)]
pub struct Hop {
    pub origin: String,
    pub path: String,
    pub method: Method,
    pub status: Option<u16>,
    pub sent: u64,
    pub received: u64,
    pub elapsed: Duration,
    pub refused: Option<String>,
}

/// A request's result and every hop it made (the first refused one last).
#[derive(Debug)]
pub struct Exchange {
    pub result: Result<Response, EgressError>,
    pub hops: Vec<Hop>,
}

/// Headers the host sets or that would let an app step around it.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "cookie",
    // The host names the app itself: an app may not claim to be another.
    "user-agent",
    "proxy-authorization",
    "proxy-connection",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-real-ip",
    ASSERTION_HEADER,
];

/// The header carrying the host's signed assertion of who is calling.
pub const ASSERTION_HEADER: &str = "superapp-assertion";
/// Headers the host adds to a hop, given the origin base it goes to.
pub type HostHeaders<'a> = dyn Fn(&str) -> Vec<(&'static str, String)> + Sync + 'a;
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 16 << 10;

/// Internal addresses found when resolving a name, carried through
/// reqwest's error chain so the app is told the real reason.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The resolver every connection goes through: it looks the name up once,
/// refuses it if any address is internal (unless the operator allows the
/// host), and hands reqwest only the addresses it checked.
#[derive(Clone)]
struct CheckedResolver {
    config: Arc<EgressConfig>,
    lookups: Arc<Lookups>,
}

impl CheckedResolver {
    async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, Refused> {
        let config = &self.config;
        let addrs: Vec<SocketAddr> = match config.hosts.get(host) {
            Some(ips) => ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect(),
            None => self
                .lookups
                .addresses(host)
                .await
                .map_err(|e| Refused(format!("cannot resolve {host}: {e}")))?,
        };
        if addrs.is_empty() {
            return Err(Refused(format!("{host} has no address")));
        }
        if !config.private_hosts.contains(host) {
            if let Some((ip, why)) = addrs
                .iter()
                .find_map(|a| addr::internal(a.ip()).map(|why| (a.ip(), why)))
            {
                return Err(Refused(format!(
                    "{host} resolves to {ip}, a {why} address: apps may reach only the public internet"
                )));
            }
        }
        Ok(addrs)
    }
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            let addrs = resolver.lookup(&host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The egress service, shared by every instance of every app.
pub struct Egress {
    config: Arc<EgressConfig>,
    client: reqwest::Client,
    /// Requests in flight, per app.
    in_flight: Mutex<HashMap<String, usize>>,
    /// Requests started per second, per app (a burst of one second's worth).
    starts: governor::DefaultKeyedRateLimiter<String>,
}

/// Releases an app's in-flight slot when its request ends.
struct InFlight<'a> {
    egress: &'a Egress,
    app: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .egress
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = in_flight.get_mut(&self.app) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Egress {
    pub fn new(config: EgressConfig) -> anyhow::Result<Egress> {
        install_tls();
        let config = Arc::new(config);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver {
                config: config.clone(),
                lookups: Lookups::system(),
            }))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the outbound HTTP client: {e}"))?;
        let rate =
            std::num::NonZeroU32::new(config.per_app_rate).unwrap_or(std::num::NonZeroU32::MIN);
        Ok(Egress {
            config,
            client,
            in_flight: Mutex::new(HashMap::new()),
            starts: governor::RateLimiter::keyed(governor::Quota::per_second(rate)),
        })
    }

    pub fn config(&self) -> &EgressConfig {
        &self.config
    }

    /// Take one request from `app`'s budget: a concurrency slot and a
    /// token of its rate.
    fn admit(&self, app: &str) -> Result<InFlight<'_>, EgressError> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = in_flight.entry(app.to_string()).or_default();
        if *n >= self.config.per_app_concurrency {
            return Err(EgressError::Limited(format!(
                "this app already has {n} requests in flight (the host's limit)"
            )));
        }
        // A start refused for concurrency above takes nothing from the rate.
        if self.starts.check_key(&app.to_string()).is_err() {
            return Err(EgressError::Limited(format!(
                "this app may start {} requests a second",
                self.config.per_app_rate
            )));
        }
        *n += 1;
        Ok(InFlight {
            egress: self,
            app: app.to_string(),
        })
    }

    /// Check `target` against the app's origins and the operator's scheme
    /// policy; the origin it falls under.
    fn allowed<'o>(
        &self,
        origins: &'o [Origin],
        target: &Target,
    ) -> Result<&'o Origin, EgressError> {
        let origin = origins.iter().find(|o| o.allows(target)).ok_or_else(|| {
            EgressError::Denied(format!(
                "{}{} is not under an origin listed in plugin.toml",
                target.base(),
                target.path
            ))
        })?;
        if target.scheme == Scheme::Http
            && !self
                .config
                .plain_http
                .contains(&format!("{}:{}", target.host, target.port))
        {
            return Err(EgressError::Denied(format!(
                "plain http to {} is not allowed by this host: use https",
                target.base()
            )));
        }
        Ok(origin)
    }

    /// Send `req` for `app`, whose manifest lists `origins`, within
    /// `time_left` of its event. `host_headers` gives the headers the host
    /// adds for the origin base each hop goes to (a request's signed
    /// assertion, a callback's signature).
    pub async fn fetch(
        &self,
        app: &str,
        origins: &[Origin],
        req: Request,
        time_left: Duration,
        host_headers: &HostHeaders<'_>,
    ) -> Exchange {
        let mut hops = Vec::new();
        let result = match self.admit(app) {
            Err(e) => Err(e),
            Ok(_in_flight) => {
                let limit = req
                    .timeout
                    .map_or(self.config.timeout, |t| t.min(self.config.timeout))
                    .min(time_left);
                if limit < Duration::from_millis(1) {
                    Err(EgressError::Unavailable(
                        "no time is left in this event for a request".into(),
                    ))
                } else {
                    match tokio::time::timeout(
                        limit,
                        self.exchange(app, origins, req, host_headers, &mut hops),
                    )
                    .await
                    {
                        Ok(result) => result,
                        Err(_) => {
                            if let Some(last) = hops.last_mut() {
                                if last.status.is_none() && last.refused.is_none() {
                                    last.refused = Some("timed out".into());
                                }
                            }
                            Err(EgressError::Unavailable(format!(
                                "the backend did not answer within {} ms",
                                limit.as_millis()
                            )))
                        }
                    }
                }
            }
        };
        Exchange { result, hops }
    }

    async fn exchange(
        &self,
        app: &str,
        origins: &[Origin],
        req: Request,
        host_headers: &HostHeaders<'_>,
        hops: &mut Vec<Hop>,
    ) -> Result<Response, EgressError> {
        let mut target =
            Target::parse(&req.url).map_err(|e| EgressError::Invalid(e.to_string()))?;
        let headers = self.headers(&req.headers)?;
        let mut body = req.body;
        if body
            .as_ref()
            .is_some_and(|b| b.len() > self.config.max_request_bytes)
        {
            return Err(EgressError::Invalid(format!(
                "the request body is over the host's limit of {} bytes",
                self.config.max_request_bytes
            )));
        }
        let mut method = req.method;
        for redirects in 0..=self.config.max_redirects {
            let started = Instant::now();
            let mut hop = Hop {
                origin: target.base(),
                path: target.path.clone(),
                method,
                status: None,
                sent: body.as_ref().map_or(0, |b| b.len() as u64),
                received: 0,
                elapsed: Duration::ZERO,
                refused: None,
            };
            if let Err(e) = self.allowed(origins, &target) {
                hop.refused = Some(e.to_string());
                hops.push(hop);
                return Err(e);
            }
            hops.push(hop);
            let hop = hops.last_mut().expect("just pushed");
            let mut builder = self
                .client
                .request(method.as_reqwest(), target.url.clone())
                .headers(headers.clone())
                .header(
                    reqwest::header::USER_AGENT,
                    format!("superapp-host ({app})"),
                );
            for (name, value) in host_headers(&target.base()) {
                builder = builder.header(name, value);
            }
            if let Some(b) = &body {
                builder = builder.body(b.clone());
            }
            let sent = builder.send().await;
            let mut response = match sent {
                Ok(r) => r,
                Err(e) => {
                    let error = send_error(&target, &e);
                    hop.elapsed = started.elapsed();
                    hop.refused = Some(error.to_string());
                    return Err(error);
                }
            };
            let status = response.status().as_u16();
            hop.status = Some(status);
            if response.status().is_redirection() {
                if let Some(location) = response.headers().get(reqwest::header::LOCATION) {
                    hop.elapsed = started.elapsed();
                    if redirects == self.config.max_redirects {
                        return Err(EgressError::Unavailable(format!(
                            "more than {} redirects",
                            self.config.max_redirects
                        )));
                    }
                    let next = location
                        .to_str()
                        .ok()
                        .and_then(|l| target.url.join(l).ok())
                        .ok_or_else(|| {
                            EgressError::Invalid(format!(
                                "{} redirected to an unreadable location",
                                target.base()
                            ))
                        })?;
                    target = Target::from_url(next)
                        .map_err(|e| EgressError::Denied(format!("a redirect was refused: {e}")))?;
                    // As browsers do: 303, and 301/302 after a POST, become a
                    // GET without a body; 307 and 308 repeat the request.
                    if status == 303 || ((status == 301 || status == 302) && method == Method::Post)
                    {
                        if method != Method::Head {
                            method = Method::Get;
                        }
                        body = None;
                    }
                    continue;
                }
            }
            let headers = response
                .headers()
                .iter()
                .filter(|(name, _)| {
                    *name != reqwest::header::SET_COOKIE && name.as_str() != "set-cookie2"
                })
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
                })
                .collect();
            let mut received = Vec::new();
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        if received.len() + chunk.len() > self.config.max_response_bytes {
                            hop.received = (received.len() + chunk.len()) as u64;
                            hop.elapsed = started.elapsed();
                            let e = EgressError::Denied(format!(
                                "the response from {} is over the host's limit of {} bytes",
                                target.base(),
                                self.config.max_response_bytes
                            ));
                            hop.refused = Some(e.to_string());
                            return Err(e);
                        }
                        received.extend_from_slice(&chunk);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        hop.elapsed = started.elapsed();
                        let e = EgressError::Unavailable(format!(
                            "the response from {} broke off: {e}",
                            target.base()
                        ));
                        hop.refused = Some(e.to_string());
                        return Err(e);
                    }
                }
            }
            hop.received = received.len() as u64;
            hop.elapsed = started.elapsed();
            return Ok(Response {
                status,
                headers,
                body: received,
            });
        }
        Err(EgressError::Unavailable("too many redirects".into()))
    }

    fn headers(
        &self,
        given: &[(String, String)],
    ) -> Result<reqwest::header::HeaderMap, EgressError> {
        if given.len() > MAX_HEADERS {
            return Err(EgressError::Invalid(format!(
                "more than {MAX_HEADERS} headers"
            )));
        }
        if given.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>() > MAX_HEADER_BYTES {
            return Err(EgressError::Invalid(format!(
                "the headers are over {MAX_HEADER_BYTES} bytes"
            )));
        }
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in given {
            let lower = name.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&lower.as_str())
                || lower.starts_with("proxy-")
                || lower.starts_with("superapp-")
            {
                return Err(EgressError::Invalid(format!(
                    "the header `{lower}` is set by the host, not by apps"
                )));
            }
            let name = reqwest::header::HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| EgressError::Invalid(format!("`{name}` is not a header name")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| EgressError::Invalid(format!("the value of `{name}` is not valid")))?;
            map.append(name, value);
        }
        Ok(map)
    }
}

/// Make ring, already the host's crypto, the process's TLS provider. Every
/// `reqwest::Client` in the workspace is built with rustls and panics
/// without a provider, so whoever builds one calls this first.
pub fn install_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The reason a send failed: a refused resolution names the address.
fn send_error(target: &Target, e: &reqwest::Error) -> EgressError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<Refused>() {
            return EgressError::Denied(refused.0.clone());
        }
        source = err.source();
    }
    if e.is_timeout() {
        return EgressError::Unavailable(format!("{} did not answer in time", target.base()));
    }
    EgressError::Unavailable(format!("cannot reach {}: {}", target.base(), root_cause(e)))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EgressConfig {
        let mut c = EgressConfig::default();
        c.hosts
            .insert("public.test".into(), vec!["93.184.216.34".parse().unwrap()]);
        c.hosts.insert(
            "mixed.test".into(),
            vec![
                "93.184.216.34".parse().unwrap(),
                "10.0.0.7".parse().unwrap(),
            ],
        );
        c.hosts
            .insert("inside.test".into(), vec!["127.0.0.1".parse().unwrap()]);
        c.private_hosts.insert("inside.test".into());
        c
    }

    #[tokio::test]
    async fn a_name_is_refused_when_any_address_is_internal() {
        let r = CheckedResolver {
            config: Arc::new(config()),
            lookups: Lookups::system(),
        };
        assert!(r.lookup("public.test").await.is_ok());
        let e = r.lookup("mixed.test").await.unwrap_err();
        assert!(e.0.contains("10.0.0.7") && e.0.contains("private"), "{e}");
        // Only the exact host the operator named may be internal.
        assert!(r.lookup("inside.test").await.is_ok());
        let e = r.lookup("localhost").await.unwrap_err();
        assert!(e.0.contains("loopback"), "{e}");
    }

    #[test]
    fn headers_the_host_owns_are_refused() {
        let egress = Egress::new(config()).unwrap();
        for name in [
            "Host",
            "cookie",
            "Superapp-Assertion",
            "proxy-foo",
            "X-Forwarded-For",
            "User-Agent",
        ] {
            let e = egress.headers(&[(name.into(), "x".into())]).unwrap_err();
            assert!(matches!(e, EgressError::Invalid(_)), "{name}: {e}");
        }
        assert!(egress.headers(&[("bad name".into(), "x".into())]).is_err());
        assert!(egress.headers(&[("x-ok".into(), "a\nb".into())]).is_err());
        assert!(egress
            .headers(&[("accept".into(), "application/json".into())])
            .is_ok());
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_before_anything_is_sent() {
        let egress = Egress::new(EgressConfig {
            max_request_bytes: 10,
            ..config()
        })
        .unwrap();
        let origins = [Origin::parse("https://public.test").unwrap()];
        let request = Request {
            method: Method::Post,
            url: "https://public.test/upload".into(),
            headers: Vec::new(),
            body: Some(vec![0; 11]),
            timeout: None,
        };
        let exchange = egress
            .fetch(
                "app.one",
                &origins,
                request,
                Duration::from_secs(1),
                &|_| Vec::new(),
            )
            .await;
        let e = exchange.result.unwrap_err();
        assert!(
            matches!(&e, EgressError::Invalid(m) if m.contains("10 bytes")),
            "{e}"
        );
        assert!(exchange.hops.is_empty(), "no origin was contacted");
    }

    #[test]
    fn an_apps_rate_and_concurrency_are_bounded() {
        let egress = Egress::new(EgressConfig {
            per_app_concurrency: 2,
            per_app_rate: 3,
            ..config()
        })
        .unwrap();
        let a = egress.admit("app.one").unwrap();
        let _b = egress.admit("app.one").unwrap();
        assert!(matches!(
            egress.admit("app.one"),
            Err(EgressError::Limited(_))
        ));
        assert!(egress.admit("app.two").is_ok(), "budgets are per app");
        drop(a);
        let _c = egress.admit("app.one").unwrap();
        drop(_c);
        // Three tokens a second: the fourth start within the second waits.
        assert!(matches!(
            egress.admit("app.one"),
            Err(EgressError::Limited(_))
        ));
    }
}
