//! Conversations and messages over HTTP: membership, idempotency, sync,
//! read markers, and bad input.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn only_members_can_read_or_write_a_conversation() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let carol = Client::signed_up(&server, "carol").await;
    let direct = alice.direct_with("bob").await;
    assert_eq!(
        bob.direct_with("alice").await,
        direct,
        "one direct conversation per pair"
    );
    let (s, _) = alice.send(&direct, "a1", "hi bob").await;
    assert_eq!(s, StatusCode::CREATED);

    for path in [
        format!("/conversations/{direct}"),
        format!("/conversations/{direct}/messages"),
        format!("/conversations/{direct}/members"),
    ] {
        let (s, body) = carol.get(&path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not-found");
    }
    let (s, _) = carol.send(&direct, "c1", "let me in").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = carol
        .post(&format!("/conversations/{direct}/read"), json!({"seq": 1}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(bob.messages(&direct, 0).await.len(), 1);
    let (_, list) = carol.get("/conversations").await;
    assert_eq!(list.as_array().unwrap().len(), 0);

    let (s, group) = alice
        .post(
            "/conversations",
            json!({"kind": "group", "title": "Trip", "members": ["bob", "carol"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let gid = group["id"].as_str().unwrap();
    let (s, members) = carol.get(&format!("/conversations/{gid}/members")).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<_> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    let (s, body) = alice
        .post(
            "/conversations",
            json!({"kind": "group", "title": "x", "members": ["nobody"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // A group of one is refused: with no one else in it (or only its
    // creator named again), it is almost surely a slip.
    for members in [json!([]), json!(["alice"])] {
        let (s, body) = alice
            .post(
                "/conversations",
                json!({"kind": "group", "title": "solo", "members": members}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid-request", "{body}");
    }
    let (_, list) = alice.get("/conversations").await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn resending_a_client_id_returns_the_same_message() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let _bob = Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;
    let (s1, first) = alice.send(&c, "same-id", "hello").await;
    let (s2, again) = alice.send(&c, "same-id", "hello").await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(first, again);
    // The same id with other text is not a retry: refused, nothing stored.
    let (s3, refused) = alice.send(&c, "same-id", "hello again").await;
    assert_eq!(s3, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency-conflict");
    let (_, next) = alice.send(&c, "other-id", "second").await;
    assert_eq!(next["seq"], 2);
    assert_eq!(alice.messages(&c, 0).await.len(), 2);
}

#[tokio::test]
async fn sync_after_seq_list_unread_and_read_markers() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;
    for i in 1..=5 {
        alice
            .send(&c, &format!("m{i}"), &format!("message {i}"))
            .await;
    }
    let after_two = bob.messages(&c, 2).await;
    let seqs: Vec<u64> = after_two
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    let (_, page) = bob
        .get(&format!("/conversations/{c}/messages?after=0&limit=2"))
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    // A page size out of range is refused, on every paged route, rather
    // than quietly changed.
    for path in [
        format!("/conversations/{c}/messages?after=0&limit=0"),
        format!("/conversations/{c}/messages?limit=501"),
        "/conversations?limit=0".to_string(),
        "/conversations?limit=501".to_string(),
        "/wallet/transactions?currency=EUR&limit=0".to_string(),
        "/wallet/transactions?currency=EUR&limit=201".to_string(),
        "/me/access-log?limit=0".to_string(),
        "/me/access-log?limit=1001".to_string(),
        "/prompts/history?limit=0".to_string(),
        "/prompts/history?limit=201".to_string(),
        "/audit/entries?limit=0".to_string(),
        "/audit/entries?limit=1001".to_string(),
    ] {
        // The audit log is the operator's to read.
        let reader = if path.starts_with("/audit") {
            Client {
                token: Some(server.operator_token()),
                ..bob.clone()
            }
        } else {
            bob.clone()
        };
        let (s, body) = reader.get(&path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`limit` is 1 to"),
            "{path}: {body}"
        );
    }

    let (_, list) = bob.get("/conversations").await;
    assert_eq!(list[0]["unread"], 5);
    assert_eq!(list[0]["last_message"]["text"], "message 5");
    let (_, alice_list) = alice.get("/conversations").await;
    assert_eq!(alice_list[0]["unread"], 0, "your own messages are read");
    let (s, read) = bob
        .post(&format!("/conversations/{c}/read"), json!({"seq": 3}))
        .await;
    assert_eq!((s, read["read_seq"].as_u64()), (StatusCode::OK, Some(3)));
    let (_, read) = bob
        .post(&format!("/conversations/{c}/read"), json!({"seq": 1}))
        .await;
    assert_eq!(read["read_seq"], 3, "markers never move back");
    let (_, list) = bob.get("/conversations").await;
    assert_eq!(list[0]["unread"], 2);
}

/// One page of `me`'s conversation list at `path`, and the path of the
/// next page its `Link` header names.
async fn list_page(me: &Client, path: &str) -> (Vec<Value>, Option<String>) {
    let resp = me.raw(Method::GET, path, None, "").await;
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    let next = resp.headers().get("link").map(|link| {
        let link = link.to_str().unwrap();
        let (target, rel) = link.split_once(';').unwrap();
        assert_eq!(rel.trim(), "rel=\"next\"", "{link}");
        let target = target.trim_matches(|c| c == '<' || c == '>');
        target.strip_prefix("/api/v1").unwrap().to_string()
    });
    (resp.json().await.unwrap(), next)
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_conversation_list_comes_a_page_at_a_time_newest_activity_first() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    for name in ["bob", "carol", "dave"] {
        if name != "bob" {
            Client::signed_up(&server, name).await;
        }
        alice.direct_with(name).await;
    }
    for title in ["One", "Two"] {
        let (s, _) = alice.group(title, &["bob", "carol"]).await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (all, next) = list_page(&alice, "/conversations").await;
    assert_eq!((all.len(), next), (5, None), "one page holds all five");

    // Two at a time: the same five in the same order, each once, and no
    // link after the last page.
    let mut paged = Vec::new();
    let mut path = Some("/conversations?limit=2".to_string());
    let mut pages = 0;
    while let Some(p) = path {
        let (page, next) = list_page(&alice, &p).await;
        assert!(page.len() <= 2, "{page:?}");
        paged.extend(page);
        path = next;
        pages += 1;
    }
    assert_eq!((pages, ids(&paged)), (3, ids(&all)));

    // A direct chat says with whom; a group does not.
    for c in &all {
        match c["kind"].as_str().unwrap() {
            "direct" => {
                let with = &c["with"];
                assert!(["bob", "carol", "dave"].contains(&with["username"].as_str().unwrap()));
                assert!(c["members"].as_array().unwrap().contains(&with["id"]));
                assert!(with.get("password").is_none() && with.get("security_phrase").is_none());
            }
            _ => assert!(c.get("with").is_none(), "{c}"),
        }
    }

    // A message moves the last conversation to the top, in the same second
    // too (messages keep milliseconds).
    let oldest = all[4]["id"].as_str().unwrap();
    let (s, _) = alice.send(oldest, "late", "back on top").await;
    assert_eq!(s, StatusCode::CREATED);
    let (first, next) = list_page(&alice, "/conversations?limit=1").await;
    assert_eq!(ids(&first), [oldest]);
    assert_eq!(first[0]["last_message"]["text"], "back on top");
    assert!(next.is_some());

    // A cursor that is none is refused, not read as the start.
    for bad in ["abc", "12-", "-x", "1.5-x"] {
        let (s, body) = alice.get(&format!("/conversations?before={bad}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cursor"),
            "{body}"
        );
    }
    // Bob sees only the three he is in.
    let (bobs, _) = list_page(&bob, "/conversations").await;
    assert_eq!(
        bobs.len(),
        3,
        "his direct chat with alice and the two groups"
    );
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx() {
    let server = Server::start(&[
        ("SUPERAPP_MAX_MESSAGE_BYTES", "100"),
        ("SUPERAPP_MAX_BODY_BYTES", "4096"),
    ]);
    let alice = Client::signed_up(&server, "alice").await;
    let _ = Client::signed_up(&server, "bob").await;
    let c = alice.direct_with("bob").await;
    let path = format!("/conversations/{c}/messages");
    let cases: Vec<(Vec<u8>, &str, StatusCode, &str)> = vec![
        (
            b"{not json".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid-json",
        ),
        (
            b"{\"client_id\":\"x\"}".to_vec(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-json",
        ),
        // Broken after an unknown field: broken is what it is.
        (
            b"{\"zz\": garbage".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid-json",
        ),
        (
            b"{\"client_id\":\"x\",\"text\":\"\xff\xfe\"}".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid-json",
        ),
        (
            b"{\"client_id\":\"x\",\"text\":\"hi\"}".to_vec(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            serde_json::to_vec(&json!({"client_id": "x", "text": "a".repeat(8000)})).unwrap(),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
        ),
        (
            serde_json::to_vec(&json!({"client_id": "x", "text": "a".repeat(200)})).unwrap(),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
        ),
        (
            serde_json::to_vec(&json!({"client_id": "", "text": "hi"})).unwrap(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (
            serde_json::to_vec(&json!({"client_id": "x", "text": "hi", "extra": 1})).unwrap(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-json",
        ),
    ];
    for (body, content_type, status, code) in cases {
        let resp = alice
            .raw(Method::POST, &path, Some(body.clone()), content_type)
            .await;
        assert_eq!(
            resp.status(),
            status,
            "{}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
        // The product's words, not the framework's.
        let message = v["error"]["message"].as_str().unwrap();
        assert!(!message.is_empty() && !message.contains("Failed to"), "{v}");
        if body.len() > 4096 {
            assert_eq!(
                message, "the request body is larger than this route's limit of 4 KiB",
                "{v}"
            );
        }
    }
    assert!(alice.messages(&c, 0).await.is_empty(), "nothing was stored");
    let (s, v) = alice.get("/conversations/no-such-id").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found"))
    );
    let (s, v) = alice.get("/no/such/route").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found"))
    );
    let (s, v) = alice.call(Method::PUT, "/me", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method-not-allowed"))
    );
    let (s, v) = alice
        .get(&format!("/conversations/{c}/messages?after=minus-one"))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid-request"))
    );
}

#[tokio::test]
async fn openapi_document_lists_the_routes() {
    let server = Server::start(&[]);
    let (s, doc) = Client::new(&server).get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/accounts",
        "/sessions",
        "/conversations/{id}/messages",
        "/ws",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
}

#[tokio::test]
async fn names_titles_and_memos_refuse_characters_that_change_how_text_reads() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let _bob = Client::signed_up(&server, "bob").await;
    // A right-to-left override would show `gpj.exe` as `exe.jpg`.
    let spoof = "Pay \u{202E}gpj.exe";
    let (s, body) = Client::new(&server)
        .post(
            "/accounts",
            json!({"username": "mallory", "display_name": spoof, "password": "a long password"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = alice
        .post(
            "/conversations",
            json!({"kind": "group", "title": spoof, "members": ["bob"]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    // Nor may a name or title show as blank.
    let blank = "\u{200B}\u{2060}\u{FEFF}";
    let (s, body) = Client::new(&server)
        .post(
            "/accounts",
            json!({"username": "nobody", "display_name": blank, "password": "a long password"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = alice
        .post(
            "/conversations",
            json!({"kind": "group", "title": blank, "members": ["bob"]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = alice
        .post(
            "/wallet/transfers",
            json!({"to": "bob", "amount": 1, "currency": "EUR", "memo": spoof,
                   "idempotency_key": "m1", "password": "alice-password"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("text-direction"),
        "{body}"
    );
    // Nor a message: an override, NUL or a terminal escape is refused
    // and nothing is stored; nor one that shows nothing (invisible
    // characters, marks on nothing), nor text hidden in tag characters.
    let direct = alice.direct_with("bob").await;
    let marks = "\u{0301}".repeat(200);
    let zalgo = format!("Z{}algo", "\u{0336}\u{0334}\u{0301}\u{0308}\u{0327}");
    for (i, bad) in [
        spoof,
        &zalgo,
        "a\u{0}b",
        "\u{1b}[31mred",
        "\u{202D}forced",
        "\u{200B}\u{FEFF}\u{200D}",
        &marks,
        "\u{E0041}\u{E0042}",
        "hello\u{E0070}\u{E0061}\u{E0079}",
        "\u{2066}\u{2069}\u{061C}\u{FFF9}",
        "\u{20E3}",
        "\u{1F3F4}\u{E0070}\u{E0061}\u{E0079}\u{E0020}\u{E0062}\u{E006F}\u{E0062}\u{E007F}",
    ]
    .into_iter()
    .enumerate()
    {
        let (s, body) = alice.send(&direct, &format!("bad{i}"), bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
    }
    assert!(alice.messages(&direct, 0).await.is_empty());
    // Right-to-left text itself is fine, with its marks and isolates, as
    // are line breaks, tabs and emoji joined into one.
    let (s, body) = alice
        .post(
            "/conversations",
            json!({"kind": "group", "title": "שלום \u{200F}team", "members": ["bob"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let fine = "שָׁלוֹם \u{2067}team\u{2069}\r\n\tfamily: \u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} \u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}";
    let (s, body) = alice.send(&direct, "fine", fine).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(alice.messages(&direct, 0).await[0]["text"], fine);
}

/// A group's members change: any member adds people, the creator removes
/// anyone, everyone may leave. Whoever is out no longer reads, sends to or
/// gets pushes from the group, and it leaves their list; one direct chat
/// never changes its two.
#[tokio::test]
async fn group_members_are_added_removed_and_leave_and_whoever_is_out_hears_nothing() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let carol = Client::signed_up(&server, "carol").await;
    let id_of = |c: &Client| {
        let c = c.clone();
        async move { c.get("/me").await.1["id"].as_str().unwrap().to_string() }
    };
    let (bob_id, carol_id) = (id_of(&bob).await, id_of(&carol).await);
    let (s, group) = alice
        .post(
            "/conversations",
            json!({"kind": "group", "title": "Trip", "members": ["bob"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{group}");
    let g = group["id"].as_str().unwrap().to_string();
    alice.send(&g, "a1", "before carol").await;
    let members = format!("/conversations/{g}/members");

    // Bob, a member, adds carol; she reads what was said before her.
    let (s, now) = bob.post(&members, json!({"username": "carol"})).await;
    assert_eq!(s, StatusCode::OK, "{now}");
    assert_eq!(now["members"].as_array().unwrap().len(), 3);
    let (s, again) = bob.post(&members, json!({"username": "carol"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["members"].as_array().unwrap().len(), 3, "once");
    // She reads what was said before her, and the host's record of who
    // added her: one, for the two adds.
    let history = carol.messages(&g, 0).await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["text"], "before carol");
    assert_eq!(history[1]["sender"], bob_id.as_str());
    assert_eq!(
        history[1]["notice"],
        json!({"kind": "added", "member": carol_id})
    );
    assert_eq!(history[1]["text"], "BOB (@bob) added CAROL (@carol)");
    let (_, listed) = carol.get("/conversations").await;
    assert!(listed.to_string().contains("Trip"), "{listed}");

    // Refusals: a stranger, a direct chat, an unknown name, a non-creator
    // removing someone else.
    let dave = Client::signed_up(&server, "dave").await;
    let (s, _) = dave.post(&members, json!({"username": "dave"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "not his group");
    let direct = alice.direct_with("bob").await;
    let (s, body) = alice
        .post(
            &format!("/conversations/{direct}/members"),
            json!({"username": "carol"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, _) = alice.post(&members, json!({"username": "nobody"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "as when creating one");
    let (s, body) = bob
        .call(Method::DELETE, &format!("{members}/{carol_id}"), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

    // Bob leaves, live: both hear that he left; the next message reaches
    // carol's connection, not his.
    let mut bobs = ws_connect(&server, bob.token.as_ref().unwrap()).await;
    let mut carols = ws_connect(&server, carol.token.as_ref().unwrap()).await;
    let (s, _) = bob
        .call(Method::DELETE, &format!("{members}/{bob_id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    alice.send(&g, "a2", "after bob left").await;
    for ws in [&mut carols, &mut bobs] {
        let told = next_message(ws, Duration::from_secs(5)).await.unwrap();
        assert_eq!(told["message"]["notice"], json!({"kind": "left"}), "{told}");
        assert_eq!(told["message"]["text"], "BOB (@bob) left");
    }
    let pushed = next_message(&mut carols, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(pushed["message"]["text"], "after bob left", "{pushed}");
    assert!(
        next_message(&mut bobs, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing pushed to whoever left after his leaving"
    );
    assert_eq!(
        bob.get(&format!("/conversations/{g}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob.get(&format!("/conversations/{g}/messages")).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, _) = bob.send(&g, "b1", "still here?").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, listed) = bob.get("/conversations").await;
    assert!(!listed.to_string().contains("Trip"), "{listed}");

    // The creator removes carol, who hears it.
    let (s, _) = alice
        .call(Method::DELETE, &format!("{members}/{carol_id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let told = next_message(&mut carols, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        told["message"]["notice"],
        json!({"kind": "removed", "member": carol_id}),
        "{told}"
    );
    assert_eq!(
        told["message"]["text"],
        "ALICE (@alice) removed CAROL (@carol)"
    );
    assert_eq!(
        carol.get(&format!("/conversations/{g}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, left) = alice.get(&members).await;
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    // Who is not a member is told so only by a member's request: an
    // outsider learns nothing of which user ids exist.
    let (s, body) = alice
        .call(Method::DELETE, &format!("{members}/{carol_id}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert!(body.to_string().contains("no such member"), "{body}");
    let (s, body) = alice
        .call(Method::DELETE, &format!("{members}/no-such-user"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert!(body.to_string().contains("no such member"), "{body}");
    for who in [carol_id.as_str(), "no-such-user"] {
        let (s, body) = dave
            .call(Method::DELETE, &format!("{members}/{who}"), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
        assert!(body.to_string().contains("no such conversation"), "{body}");
    }
    // The group's history records each change, in order.
    let notices: Vec<Value> = alice
        .messages(&g, 0)
        .await
        .into_iter()
        .filter_map(|m| m.get("notice").cloned())
        .collect();
    assert_eq!(
        notices,
        [
            json!({"kind": "added", "member": carol_id}),
            json!({"kind": "left"}),
            json!({"kind": "removed", "member": carol_id}),
        ]
    );

    // The creator leaves: the member longest in the group may remove
    // others from then on, and the creator, added back, may not.
    let (_, group) = alice
        .post(
            "/conversations",
            json!({"kind": "group", "title": "Club", "members": ["bob", "carol"]}),
        )
        .await;
    let club = group["id"].as_str().unwrap().to_string();
    let alice_id = id_of(&alice).await;
    let club_members = format!("/conversations/{club}/members");
    let (s, _) = alice
        .call(Method::DELETE, &format!("{club_members}/{alice_id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, now) = bob.get(&format!("/conversations/{club}")).await;
    assert_eq!(now["owner"], bob_id.as_str(), "{now}");
    let history = bob.messages(&club, 0).await;
    assert_eq!(
        history.last().unwrap()["notice"],
        json!({"kind": "left", "owner": bob_id}),
        "the notice names the new owner: {history:?}"
    );
    let (s, _) = bob.post(&club_members, json!({"username": "alice"})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = alice
        .call(Method::DELETE, &format!("{club_members}/{carol_id}"), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = bob
        .call(Method::DELETE, &format!("{club_members}/{carol_id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn who_may_add_me_to_groups_is_mine_to_choose() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let bob = Client::signed_up(&server, "bob").await;
    let carol = Client::signed_up(&server, "carol").await;
    let mallory = Client::signed_up(&server, "mallory").await;
    let adds = |c: &Client, to: &str| {
        let (c, to) = (c.clone(), to.to_string());
        async move {
            c.call(
                Method::PUT,
                "/me/group-adds",
                Some(json!({ "group_adds": to })),
            )
            .await
        }
    };
    let conversations = |c: &Client| {
        let c = c.clone();
        async move { c.get("/conversations").await.1.as_array().unwrap().len() }
    };
    assert_eq!(carol.get("/me").await.1["group_adds"], "everyone");

    // Carol lets in only people she has written to.
    let (s, body) = adds(&carol, "contacts").await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(carol.get("/me").await.1["group_adds"], "contacts");

    // Mallory opens a chat with her and writes: that is not enough.
    let to_carol = mallory.direct_with("carol").await;
    mallory.send(&to_carol, "m1", "hi carol").await;
    let (s, body) = mallory.group("Deals", &["bob", "carol"]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    // The refusal says only that he may not, not what she chose.
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "CAROL (@carol) does not accept being added to groups by you"
    );
    assert_eq!(conversations(&mallory).await, 1, "no group was made");
    assert_eq!(conversations(&carol).await, 1);

    // Nor is a group made without her and grown to hold her.
    let (s, deals) = mallory.group("Deals", &["bob"]).await;
    assert_eq!(s, StatusCode::CREATED, "{deals}");
    let deals = deals["id"].as_str().unwrap().to_string();
    let deal_members = format!("/conversations/{deals}/members");
    for member in [&mallory, &bob] {
        let (s, body) = member
            .post(&deal_members, json!({"username": "carol"}))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    }
    // Somebody outside the group learns nothing of her setting.
    let (s, body) = alice
        .post(&deal_members, json!({"username": "carol"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(conversations(&carol).await, 1);
    assert!(carol.get(&format!("/conversations/{deals}")).await.0 == StatusCode::NOT_FOUND);

    // Once she writes to alice, alice may add her.
    let to_alice = carol.direct_with("alice").await;
    carol.send(&to_alice, "c1", "hi alice").await;
    let (s, trip) = alice.group("Trip", &["carol"]).await;
    assert_eq!(s, StatusCode::CREATED, "{trip}");
    let trip = trip["id"].as_str().unwrap().to_string();
    let (s, body) = mallory.group("Deals again", &["carol"]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

    // Nobody: not even alice, and a group she is in stays.
    let (s, _) = adds(&carol, "nobody").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = alice.group("Trip 2", &["carol"]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["message"].as_str(), Some(message));
    let trip_members = format!("/conversations/{trip}/members");
    let (s, body) = alice
        .post(&trip_members, json!({"username": "carol"}))
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "adding a member again changes nothing: {body}"
    );
    assert_eq!(
        carol.get(&format!("/conversations/{trip}")).await.0,
        StatusCode::OK
    );
    // She still makes groups of her own.
    let (s, body) = carol.group("Mine", &["alice"]).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    // Bad values and strangers change nothing.
    for bad in [
        json!({"group_adds": "friends"}),
        json!({}),
        json!({"group_adds": "everyone", "x": 1}),
    ] {
        let (s, body) = carol.call(Method::PUT, "/me/group-adds", Some(bad)).await;
        assert!(s.is_client_error(), "{s} {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    let (s, _) = Client::new(&server)
        .call(
            Method::PUT,
            "/me/group-adds",
            Some(json!({"group_adds": "everyone"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(carol.get("/me").await.1["group_adds"], "nobody");

    // Back to everyone: mallory may add her.
    adds(&carol, "everyone").await;
    let (s, body) = mallory
        .post(&deal_members, json!({"username": "carol"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
}
