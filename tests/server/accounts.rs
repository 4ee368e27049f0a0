//! Registration, login, sessions and throttling.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn register_login_me_and_wrong_password() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let (s, me) = alice.get("/me").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["display_name"], "ALICE");

    let anon = Client::new(&server);
    let (s, body) = anon
        .post(
            "/sessions",
            json!({"username": "alice", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "bad-credentials");
    let (s, body) = anon
        .post(
            "/sessions",
            json!({"username": "nobody", "password": "whatever1"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "an unknown user looks like a wrong password"
    );
    assert_eq!(body["error"]["code"], "bad-credentials");

    let (s, body) = anon
        .post(
            "/accounts",
            json!({"username": "ALICE", "display_name": "x", "password": "password9"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "usernames are case-insensitive: {body}"
    );
    // Nor may another read like it, since people tell each other apart by
    // username; and a display name may not hide or draw over its
    // neighbours.
    let (s, body) = anon
        .post(
            "/accounts",
            json!({"username": "alice.", "display_name": "ALICE", "password": "password9"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("reads like `alice`"));
    for (name, why) in [
        ("\u{200B}Alice", "shows as nothing"),
        ("Al\u{0301}\u{0302}\u{0303}\u{0304}\u{0305}ice", "stack"),
    ] {
        let (s, body) = anon
            .post(
                "/accounts",
                json!({"username": "mallory", "display_name": name, "password": "password9"}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(why),
            "{body}"
        );
    }
    for bad in ["al", "9lives", "has space", "a".repeat(33).as_str()] {
        let (s, body) = anon
            .post(
                "/accounts",
                json!({"username": bad, "display_name": "x", "password": "password9"}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (s, _) = anon
        .post(
            "/accounts",
            json!({"username": "shorty", "display_name": "x", "password": "short"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = anon.get("/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Every response carries a request id, for matching it to the logs.
    let resp = anon.raw(Method::GET, "/me", None, "").await;
    let id = resp
        .headers()
        .get("x-request-id")
        .expect("x-request-id")
        .to_str()
        .unwrap();
    assert_eq!(id.len(), 36, "{id}");
}

#[tokio::test]
async fn failed_logins_lock_out_their_address_and_never_the_user_where_they_sign_in() {
    let server = Server::start(&[
        ("SUPERAPP_LOGIN_MAX_FAILURES_PER_USER", "3"),
        ("SUPERAPP_LOGIN_MAX_FAILURES_PER_ACCOUNT", "5"),
        ("SUPERAPP_TRUSTED_PROXIES", "127.0.0.0/8,::1"),
    ]);
    let alice = Client::signed_up(&server, "alice").await;
    // Clients at addresses of their own, as a trusted proxy names them.
    let login = |from: &'static str, password: &'static str| {
        let request = http_client()
            .post(format!("{}/sessions", server.base))
            .header("x-forwarded-for", from)
            .json(&json!({"username": "alice", "password": password}));
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status();
            let retry = resp.headers().get("retry-after").is_some();
            let body: serde_json::Value = resp.json().await.unwrap();
            (status, retry, body)
        }
    };
    let (home, attacker, helper, elsewhere) =
        ("203.0.113.1", "198.51.100.7", "198.51.100.8", "192.0.2.50");
    assert_eq!(login(home, "alice-password").await.0, StatusCode::CREATED);
    for _ in 0..3 {
        assert_eq!(
            login(attacker, "guess-guess").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, retry, body) = login(attacker, "alice-password").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "from the guessing address even the right password waits"
    );
    assert!(retry);
    assert_eq!(body["error"]["code"], "too-many-attempts");
    assert_eq!(
        login(elsewhere, "alice-password").await.0,
        StatusCode::CREATED
    );
    // Past the account's own limit, guesses from several addresses lock
    // out every address new to it, but not where alice signs in, nor her
    // session's password change.
    for _ in 0..2 {
        assert_eq!(
            login(helper, "guess-guess").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login("192.0.2.99", "alice-password").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(login(home, "alice-password").await.0, StatusCode::CREATED);
    // Nor do guesses from alice's own network stop her session.
    let neighbour = Client::new(&server);
    for _ in 0..3 {
        let (status, _) = neighbour
            .post(
                "/sessions",
                json!({"username": "alice", "password": "guess-guess"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = alice
        .call(
            Method::PUT,
            "/me/password",
            Some(
                json!({"current_password": "alice-password", "new_password": "alice-new-password"}),
            ),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    // Other accounts are unaffected.
    let _bob = Client::signed_up(&server, "bob").await;
}

#[tokio::test]
async fn failed_logins_are_throttled_per_client_address() {
    let server = Server::start(&[("SUPERAPP_LOGIN_MAX_FAILURES_PER_CLIENT", "4")]);
    let anon = Client::new(&server);
    for i in 0..4 {
        let (s, _) = anon
            .post(
                "/sessions",
                json!({"username": format!("user{i}"), "password": "guess-guess"}),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, body) = anon
        .post(
            "/sessions",
            json!({"username": "user9", "password": "guess-guess"}),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

/// Behind a trusted reverse proxy, the client named in `X-Forwarded-For`
/// counts, not the proxy: two clients each get their own sign-ups, and a
/// client writing the header itself cannot pass for another. Without the
/// setting, the header is ignored.
#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_counts_on_its_own() {
    let sign_up = |server: &Server, name: &str, forwarded: &str| {
        let request = http_client()
            .post(format!("{}/accounts", server.base))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"username": name, "display_name": "X", "password": "a long password"}));
        async move { request.send().await.unwrap().status() }
    };
    let proxied = Server::start(&[
        ("SUPERAPP_SIGNUPS_PER_CLIENT", "2"),
        ("SUPERAPP_TRUSTED_PROXIES", "127.0.0.0/8,::1"),
    ]);
    for (name, client) in [
        ("ann1", "203.0.113.5"),
        ("ann2", "203.0.113.5"),
        ("bea1", "203.0.113.6"),
    ] {
        assert_eq!(
            sign_up(&proxied, name, client).await,
            StatusCode::CREATED,
            "{name}"
        );
    }
    for (name, forwarded) in [
        ("ann3", "203.0.113.5"),
        // What the client wrote before its own address is not believed.
        ("ann4", "198.51.100.1, 203.0.113.5"),
    ] {
        assert_eq!(
            sign_up(&proxied, name, forwarded).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{name}"
        );
    }
    assert_eq!(
        sign_up(&proxied, "bea2", "203.0.113.6").await,
        StatusCode::CREATED
    );

    let direct = Server::start(&[("SUPERAPP_SIGNUPS_PER_CLIENT", "2")]);
    let mut statuses = Vec::new();
    for (i, client) in ["203.0.113.7", "203.0.113.8", "203.0.113.9"]
        .iter()
        .enumerate()
    {
        statuses.push(sign_up(&direct, &format!("dan{i}"), client).await);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "the header of a client that is no trusted proxy counts for nothing"
    );
}

#[tokio::test]
async fn sign_ups_are_limited_per_client_address_even_in_a_burst() {
    let server = Server::start(&[("SUPERAPP_SIGNUPS_PER_CLIENT", "3")]);
    let anon = Client::new(&server);
    let sign_up = |name: String| {
        let anon = anon.clone();
        async move {
            anon.post(
                "/accounts",
                json!({"username": name, "display_name": "X", "password": "a long password"}),
            )
            .await
        }
    };
    // Bad input is refused before it counts.
    let (s, body) = anon
        .post(
            "/accounts",
            json!({"username": "shorty", "display_name": "X", "password": "short"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    // Ten at once from one address: the places are held while they run,
    // so exactly three go through, however they interleave.
    let outcomes =
        futures_util::future::join_all((0..10).map(|i| sign_up(format!("burst{i}")))).await;
    let created: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, (s, _))| *s == StatusCode::CREATED)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(created.len(), 3, "{outcomes:?}");
    for (s, body) in outcomes.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(*s, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "rate-limited", "{body}");
    }
    // A refused sign-up made no account: its name is still free to log in
    // as nobody, and the made ones work.
    let refused = (0..10).find(|i| !created.contains(i)).unwrap();
    let (s, _) = anon
        .post(
            "/sessions",
            json!({"username": format!("burst{refused}"), "password": "a long password"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    anon.login(&format!("burst{}", created[0]), "a long password")
        .await;
    // The refusal says when to come back.
    let resp = anon
        .raw(
            Method::POST,
            "/accounts",
            Some(
                json!({"username": "later", "display_name": "X", "password": "a long password"})
                    .to_string()
                    .into_bytes(),
            ),
            "application/json",
        )
        .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn logout_revokes_and_sessions_expire() {
    // Long enough for signing up, in and out on a loaded machine (password
    // hashing runs twice) before the first session could expire.
    let ttl = std::time::Duration::from_secs(3);
    let server = Server::start(&[("SUPERAPP_SESSION_TTL_SECS", "3")]);
    let alice = Client::signed_up(&server, "alice").await;
    let second = Client {
        token: Some(alice.login("alice", "alice-password").await),
        ..alice.clone()
    };
    let second_since = std::time::Instant::now();
    let (s, _) = alice.call(Method::DELETE, "/sessions/current", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = alice.get("/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    // Another session of the same user was not revoked, but it expires.
    let (s, _) = second.get("/me").await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(
        (ttl + std::time::Duration::from_millis(1100)).saturating_sub(second_since.elapsed()),
    )
    .await;
    let (s, body) = second.get("/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn the_session_cookie_is_httponly_and_authenticates() {
    let server = Server::start(&[]);
    let _ = Client::signed_up(&server, "alice").await;
    let anon = Client::new(&server);
    let resp = anon
        .raw(
            Method::POST,
            "/sessions",
            Some(br#"{"username":"alice","password":"alice-password"}"#.to_vec()),
            "application/json",
        )
        .await;
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let me = anon
        .http
        .get(format!("{}/me", server.base))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
}

/// `GET /me` with these `Cookie` headers: the status.
async fn me_with_cookies(server: &Server, cookies: &[&str]) -> StatusCode {
    let mut req = http_client().get(format!("{}/me", server.base));
    for cookie in cookies {
        req = req.header("cookie", *cookie);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn a_request_with_two_session_cookies_is_refused_and_a_secure_cookie_is_host_only() {
    let server = Server::start(&[]);
    Client::signed_up(&server, "alice").await;
    Client::signed_up(&server, "bob").await;
    let (set, alice) = login_cookie(&server, "alice").await;
    assert!(set.starts_with("superapp_session="), "{set}");
    let (_, bob) = login_cookie(&server, "bob").await;
    assert_eq!(me_with_cookies(&server, &[&alice]).await, StatusCode::OK);
    // A second session cookie (set by a sibling subdomain's page, say):
    // neither is taken, in one header or in two.
    let both = format!("{bob}; {alice}");
    assert_eq!(
        me_with_cookies(&server, &[&both]).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        me_with_cookies(&server, &[&alice, &bob]).await,
        StatusCode::BAD_REQUEST
    );
    // The other name is not this server's cookie.
    let prefixed = format!("__Host-{alice}");
    assert_eq!(
        me_with_cookies(&server, &[&prefixed]).await,
        StatusCode::UNAUTHORIZED
    );

    // Where the cookie is Secure it is `__Host-` prefixed (Path=/, no
    // Domain), and only that name is read.
    let secure = Server::start(&[("SUPERAPP_COOKIE_SECURE", "true")]);
    Client::signed_up(&secure, "alice").await;
    Client::signed_up(&secure, "bob").await;
    let (set, alice) = login_cookie(&secure, "alice").await;
    let (_, bob) = login_cookie(&secure, "bob").await;
    assert!(set.starts_with("__Host-superapp_session="), "{set}");
    for attribute in ["Secure", "Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(
            set.split("; ").any(|a| a == attribute),
            "{attribute}: {set}"
        );
    }
    assert!(!set.to_ascii_lowercase().contains("domain="), "{set}");
    assert_eq!(me_with_cookies(&secure, &[&alice]).await, StatusCode::OK);
    let unprefixed = alice.strip_prefix("__Host-").unwrap();
    assert_eq!(
        me_with_cookies(&secure, &[unprefixed]).await,
        StatusCode::UNAUTHORIZED
    );
    let both = format!("{alice}; {bob}");
    assert_eq!(
        me_with_cookies(&secure, &[&both]).await,
        StatusCode::BAD_REQUEST
    );
    // Signing out clears the cookie of that name.
    let resp = http_client()
        .delete(format!("{}/sessions/current", secure.base))
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let cleared = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("__Host-superapp_session=;"),
        "{cleared}"
    );
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(
        me_with_cookies(&secure, &[&alice]).await,
        StatusCode::UNAUTHORIZED
    );
}

/// The host secret is its user's alone, and so is the data directory the
/// host makes (other users cannot read its messages or ledger).
#[tokio::test]
async fn the_host_secret_is_created_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start(&[]);
    let dir_mode = std::fs::metadata(&server.data_dir)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let mode = std::fs::metadata(server.data_dir.join("host-secret"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::metadata(server.data_dir.join("host-secret"))
            .unwrap()
            .len(),
        32
    );
}

/// Changing the password takes the current one; it ends every other
/// session of the account at once (a live connection too), keeps the one
/// that asked, and the old password no longer signs in.
#[tokio::test]
async fn changing_the_password_ends_the_other_sessions_and_keeps_this_one() {
    let server = Server::start(&[("SUPERAPP_HEARTBEAT_SECS", "30")]);
    let here = Client::signed_up(&server, "alice").await;
    let mut there = Client::new(&server);
    there.token = Some(there.login("alice", "alice-password").await);
    let mut live = ws_connect(&server, there.token.as_ref().unwrap()).await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});

    let (status, body) = here
        .call(
            Method::PUT,
            "/me/password",
            Some(change("not-it-at-all", "a-new-password")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "wrong-password");
    let (status, body) = here
        .call(
            Method::PUT,
            "/me/password",
            Some(change("alice-password", "short")),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        there.get("/me").await.0,
        StatusCode::OK,
        "nothing changed yet"
    );

    let (status, body) = here
        .call(
            Method::PUT,
            "/me/password",
            Some(change("alice-password", "a-new-password")),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        here.get("/me").await.0,
        StatusCode::OK,
        "this session goes on"
    );
    let (status, body) = there.get("/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("password was changed"),
        "{body}"
    );
    assert_eq!(
        crate::live::close_code(&mut live, std::time::Duration::from_secs(5)).await,
        4001,
        "its live connection closes at once"
    );
    let (status, _) = here
        .post(
            "/sessions",
            json!({"username": "alice", "password": "alice-password"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old password is gone");
    let mut again = Client::new(&server);
    again.token = Some(again.login("alice", "a-new-password").await);
    assert_eq!(again.get("/me").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_request_with_two_authorization_headers_is_refused() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let (alice, bob) = (alice.token.unwrap(), bob.token.unwrap());
    let operator = server.operator_token();
    let root = server.base.trim_end_matches("/api/v1").to_string();
    let me = format!("{}/me", server.base);
    let metrics = format!("{root}/metrics");
    // One header each: accepted.
    for (url, token) in [(&me, &alice), (&metrics, &operator)] {
        let resp = http_client()
            .get(url.as_str())
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
    }
    // Two: whichever a proxy in front would heed, this server heeds none.
    for (url, first, second) in [
        (&me, &alice, &bob),
        (&me, &alice, &alice),
        (&metrics, &operator, &alice),
        (&metrics, &alice, &operator),
    ] {
        let resp = http_client()
            .get(url.as_str())
            .header("authorization", format!("Bearer {first}"))
            .header("authorization", format!("Bearer {second}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{url}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid-request", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("more than one Authorization"),
            "{body}"
        );
    }
}
