//! The web shell as served: its files, the security headers on every
//! response, and the QR codes it asks the host for.

use reqwest::StatusCode;

use crate::common::*;

#[tokio::test]
async fn every_response_carries_a_strict_csp_and_the_security_headers() {
    let server = Server::start(&[]);
    let root = server.base.trim_end_matches("/api/v1").to_string();
    let http = crate::common::http_client();
    for (url, status) in [
        (format!("{root}/"), StatusCode::OK),
        (format!("{root}/shell/app.js"), StatusCode::OK),
        (format!("{root}/shell/style.css"), StatusCode::OK),
        (format!("{root}/shell/nothing.js"), StatusCode::NOT_FOUND),
        (format!("{}/me", server.base), StatusCode::UNAUTHORIZED),
        (
            format!("{}/no/such/route", server.base),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), status, "{url}");
        let h = response.headers();
        let csp = h
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{url}: no CSP"))
            .to_str()
            .unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "require-trusted-types-for 'script'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{url}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{url}");
        assert_eq!(h["x-frame-options"], "DENY", "{url}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{url}");
        // No cache keeps an API answer; the shell's files are checked
        // again before each use.
        let shell_file = status == StatusCode::OK && !url.contains("/api/v1");
        let cache = if shell_file { "no-cache" } else { "no-store" };
        assert_eq!(h["cache-control"], cache, "{url}");
    }
    // A signed-in user's data too.
    let alice = Client::signed_up(&server, "alice").await;
    let me = alice.raw(reqwest::Method::GET, "/me", None, "").await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.headers()["cache-control"], "no-store");
    let index = http
        .get(format!("{root}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(index.contains(r#"<script type="module" src="/shell/app.js">"#));
    assert!(!index.contains("<script>"), "no inline script in the page");
    let js = http
        .get(format!("{root}/shell/render.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let text = js.text().await.unwrap();
    assert!(
        !text.contains("innerHTML") && !text.contains("eval("),
        "render.js builds DOM nodes only"
    );
}

#[tokio::test]
async fn the_host_draws_qr_codes_for_signed_in_users_and_refuses_what_does_not_fit() {
    let server = Server::start(&[]);
    let anon = Client::new(&server);
    let (status, _) = anon.get("/qr?text=hello").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let alice = Client::signed_up(&server, "alice").await;
    let (status, qr) = alice
        .get("/qr?text=http%3A%2F%2F127.0.0.1%2F%23%2Fapp%2Fx")
        .await;
    assert_eq!(status, StatusCode::OK, "{qr}");
    let rows = qr["modules"].as_array().unwrap();
    assert!(
        rows.len() >= 21 && rows.len() % 4 == 1,
        "a QR code is 21, 25, 29… modules wide"
    );
    assert!(rows.iter().all(|r| r.as_str().unwrap().len() == rows.len()));
    let long = "x".repeat(2049);
    let (status, body) = alice.get(&format!("/qr?text={long}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = alice.get("/qr?text=").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = alice.get("/qr").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn users_change_only_their_own_security_phrase_and_bad_ones_are_refused() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let (_, before) = bob.get("/me").await;
    assert!(
        before["security_phrase"].as_str().unwrap().len() >= 4,
        "one was suggested"
    );
    let put = |c: &Client, phrase: serde_json::Value| {
        let c = c.clone();
        async move {
            c.call(
                reqwest::Method::PUT,
                "/me/security-phrase",
                Some(serde_json::json!({"security_phrase": phrase})),
            )
            .await
        }
    };
    for bad in [
        serde_json::json!("ab"),
        serde_json::json!("x".repeat(61)),
        serde_json::json!("line\nbreak"),
        serde_json::json!(7),
        // Text that reads backwards, and a phrase that shows as blank.
        serde_json::json!("\u{202E}evil phrase"),
        serde_json::json!("\u{200B}\u{200B}\u{200B}\u{200B}"),
        serde_json::json!("ab\u{FEFF}\u{2060}  "),
    ] {
        let (status, body) = put(&alice, bad).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{status}: {body}"
        );
        assert!(body["error"]["message"].is_string());
    }
    let (status, _) = put(&alice, serde_json::json!("amber lagoon 3")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        alice.get("/me").await.1["security_phrase"],
        "amber lagoon 3"
    );
    assert_eq!(
        bob.get("/me").await.1["security_phrase"],
        before["security_phrase"]
    );
    let (status, _) = put(&Client::new(&server), serde_json::json!("nobody here")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Member lists never carry anyone's phrase.
    let chat = alice.direct_with("bob").await;
    let (_, members) = bob.get(&format!("/conversations/{chat}/members")).await;
    assert!(!members.to_string().contains("amber lagoon"), "{members}");
}
