//! The server benches' load generator: one plain HTTP/1.1 connection per
//! simulated client (hyper's connection API, no pool, no redirects, no
//! per-request URL parsing), so the client spends as little as it can of the
//! cores it shares with the server.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One keep-alive connection to the server under test.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

impl Conn {
    /// Connect to the server of `base` (`http://host:port/…`); requests
    /// then name absolute paths.
    pub async fn open(base: &str) -> Conn {
        let rest = base.strip_prefix("http://").expect("an http:// base");
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .expect("connect to the server");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        Conn {
            sender,
            authority: authority.to_string(),
        }
    }

    /// `method path` with a bearer token and a JSON body (empty for none):
    /// the status and the whole answer.
    pub async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        token: Option<&str>,
        json: Bytes,
    ) -> (u16, Bytes) {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if !json.is_empty() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(json)).expect("a request");
        self.sender.ready().await.expect("the connection is open");
        let response = self.sender.send_request(request).await.expect("an answer");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the answer's body")
            .to_bytes();
        (status, body)
    }

    pub async fn post(&mut self, path: &str, token: &str, json: Bytes) -> (u16, Bytes) {
        self.send(hyper::Method::POST, path, Some(token), json)
            .await
    }
}

/// Sign up `name` (password `name-password`) at the API at `base` and sign
/// in: the session token. Setup, not load: a pooled client is fine here.
pub async fn signed_up(http: &reqwest::Client, base: &str, name: &str) -> String {
    let password = format!("{name}-password");
    let account = serde_json::json!({"username": name, "display_name": name, "password": password});
    let created = http
        .post(format!("{base}/accounts"))
        .json(&account)
        .send()
        .await
        .expect("sign up");
    assert!(
        created.status().is_success(),
        "sign up: {}",
        created.status()
    );
    let session: serde_json::Value = http
        .post(format!("{base}/sessions"))
        .json(&serde_json::json!({"username": name, "password": password}))
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("session");
    session["token"].as_str().expect("token").to_string()
}
