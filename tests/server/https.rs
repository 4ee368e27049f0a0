//! The `http` capability over real TLS: a loopback backend whose
//! certificate a test CA signed (trusted through `SSL_CERT_FILE`, as an
//! operator trusts a private CA), reached by its name while the host
//! connects to the address it checked. A listed name that the certificate
//! does not name is refused.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::json;

use crate::apps::{serve_with, setup, texts};
use crate::common::*;

const PROBE: &str = "dev.superapp.testing.probe";

/// A TLS backend on a loopback port with a certificate for `name` signed
/// by a fresh CA; its port and the CA's certificate (PEM).
async fn tls_backend(name: &str) -> (u16, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "superapp test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/hello",
        get(|headers: HeaderMap| async move {
            format!(
                "hello over tls asserted={}",
                headers.contains_key("superapp-assertion")
            )
        }),
    );
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, ca.pem())
}

async fn fetch(client: &Client, url: &str) -> String {
    let v = client.act(PROBE, "http", Some(url), json!({})).await;
    texts(&v)[0].clone()
}

#[tokio::test]
async fn an_https_origin_is_reached_by_its_name_and_a_certificate_for_another_is_refused() {
    let (port, ca) = tls_backend("backend.test").await;
    let s = setup(&["testing/probe"]);
    let ca_file = s.data.with_file_name("test-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let manifest = s.apps.join("probe/plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "origins = [\"https://backend.probe.test\"]",
        &format!("origins = [\"https://backend.test:{port}\", \"https://sneaky.test:{port}\"]"),
    );
    std::fs::write(&manifest, text).unwrap();
    let server = serve_with(
        &s,
        &[
            ("SSL_CERT_FILE", ca_file.to_str().unwrap()),
            ("SUPERAPP_HTTP_PRIVATE_HOSTS", "backend.test,sneaky.test"),
            (
                "SUPERAPP_HTTP_HOSTS",
                "backend.test=127.0.0.1,sneaky.test=127.0.0.1",
            ),
        ],
    );
    let alice = Client::signed_up(&server, "alice").await;
    let hello = format!("https://backend.test:{port}/hello");
    assert!(fetch(&alice, &hello)
        .await
        .starts_with("err: consent-required"));
    let (_, prompts) = alice.get("/prompts").await;
    alice.approve(&prompts[0], json!({})).await;

    // The certificate names backend.test, which the host asked for (SNI)
    // while connecting to the address it resolved and checked.
    assert_eq!(
        fetch(&alice, &hello).await,
        "ok: \"200 hello over tls asserted=true\""
    );
    // The same server under a name its certificate does not carry: the
    // host refuses to talk to it, and nothing is answered.
    let sneaky = fetch(&alice, &format!("https://sneaky.test:{port}/hello")).await;
    assert!(
        sneaky.starts_with("err: unavailable") && !sneaky.contains("200"),
        "{sneaky}"
    );
}
