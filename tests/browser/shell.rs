//! The shell as users meet it: sign-up, a hospital booking paid in the
//! host's dialog, the confirmation in chats; hostile app content; revoking
//! a permission.

use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::harness::{self, Browser};

const HOSPITAL: &str = "dev.superapp.hospital-booking";

/// The shell's address on `server`.
fn shell_url(server: &Server, fragment: &str) -> String {
    format!("{}/{fragment}", server.base.trim_end_matches("/api/v1"))
}

/// Sign up through the shell's form.
async fn sign_up(b: &mut Browser, server: &Server, name: &str, phrase: &str) {
    b.goto(&shell_url(server, "#/signup")).await;
    b.fill("#username", name).await;
    b.fill("#display_name", &name.to_uppercase()).await;
    b.fill("#password", &format!("{name}-password")).await;
    b.fill("#security_phrase", phrase).await;
    b.shot("sign-up").await;
    b.click_text("Create account").await;
    b.wait_text("Apps").await;
}

/// Stop the server, top `user` up through the operator's CLI, start again.
fn restart_with_money(s: &Setup, server: Server, user: &str) -> Server {
    assert!(server.terminate().success());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(["wallet", "topup", user, "10000", "--idempotency-key"])
        .arg(format!("browser-{user}"))
        .arg("--data-dir")
        .arg(&s.data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serve(s)
}

#[tokio::test]
async fn a_new_user_books_and_pays_in_the_shell_and_another_user_finds_the_slot_taken() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let s = setup(&["hospital-booking"]);
    let server = serve(&s);
    let mut b = Browser::start("hospital-booking").await;
    b.goto(&shell_url(&server, "")).await;
    b.wait_text("Sign in").await;
    b.shot("signed-out").await;
    sign_up(&mut b, &server, "ada", "purple walrus 7").await;
    // The server comes back on another port; the session cookie stays.
    let server = restart_with_money(&s, server, "ada");

    b.goto(&shell_url(&server, "#/apps")).await;
    b.wait_text("City Hospital").await;
    b.wait_text("Approved by").await;
    b.shot("directory").await;
    b.click_text("Open City Hospital").await;
    b.wait_text("General medicine").await;
    b.shot("hospital").await;
    b.click_text("General medicine").await;
    b.wait_text("Next free").await;
    b.shot("department").await;
    b.click_text("Book ").await;
    b.wait_text("Confirm your appointment").await;
    b.shot("held").await;
    let details = b.body_text().await;
    b.click_text("Pay EUR 40.00").await;

    // The payment dialog is the host's: it carries ada's phrase, and its
    // confirm button ignores a press made before it has been shown a while.
    let dialog = b.find("dialog[data-host-dialog] .phrase").await;
    assert!(dialog.text().await.unwrap().contains("purple walrus 7"));
    b.shot("payment-dialog").await;
    b.fill(
        "dialog[data-host-dialog] input[type=password]",
        "ada-password",
    )
    .await;
    let early = b
        .js(
            "const b = document.querySelector('dialog[data-host-dialog] button.primary'); b.click(); return b.disabled;",
            vec![],
        )
        .await;
    assert_eq!(early, json!(true), "the confirm button starts disabled");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    b.click("dialog[data-host-dialog] button.primary").await;
    // The booking is confirmed; the app then asks to write to ada's chats.
    b.wait_text("Paid and booked").await;
    b.wait_text("Allow City Hospital to send you messages in Chats?")
        .await;
    b.shot("notify-consent").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    b.click("dialog[data-host-dialog] button.primary").await;
    b.wait_text("Your appointment").await;
    b.wait_text("Booked").await;
    b.shot("booked").await;

    // The confirmation is in chats, with a card that opens the appointment.
    b.click("a[data-nav=chats]").await;
    b.wait_text("is booked").await;
    b.shot("chats").await;
    // The app's chat carries the host's mark, which no person's name can.
    let mark = b.find("a.chat-link.kind-service .host-badge").await;
    assert_eq!(mark.text().await.unwrap(), "App");
    b.click("a.chat-link").await;
    b.wait_text("Your appointment").await;
    b.shot("service-chat").await;
    b.click("button.v-card").await;
    b.wait_text("Reference").await;
    b.shot("appointment-from-card").await;

    // Another user finds that time taken.
    let bob = Client::signed_up(&server, "bob").await;
    let date = details
        .lines()
        .skip_while(|l| !l.starts_with("Date"))
        .nth(1)
        .and_then(|l| l.rsplit('(').next())
        .map(|l| l.trim_end_matches(')').to_string())
        .unwrap_or_else(|| panic!("no date in {details}"));
    let time = details
        .lines()
        .skip_while(|l| !l.starts_with("Time"))
        .nth(1)
        .unwrap()
        .replace(':', "");
    let (status, taken) = bob
        .post(
            &format!("/apps/{HOSPITAL}/events"),
            json!({"name": "take", "value": format!("weber/{date}/{time}")}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{taken}");
    assert!(taken.to_string().contains("just taken"), "{taken}");
    b.finish().await;
}

#[tokio::test]
async fn an_apps_markup_stays_text_and_its_fake_dialog_cannot_show_the_users_phrase() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let s = setup(&["testing/impostor"]);
    let server = serve(&s);
    let mut b = Browser::start("hostile-view").await;
    sign_up(&mut b, &server, "eve", "blue heron 42").await;
    b.goto(&shell_url(&server, "#/app/dev.superapp.testing.impostor"))
        .await;
    b.wait_text("<script>window.__pwned = 'script'</script>")
        .await;
    b.shot("hostile-view").await;
    let text = b.body_text().await;
    for inert in [
        "<img src=x onerror=\"window.__pwned = 'onerror'\">",
        "<b>Your phrase: correct horse</b>",
        "<i>City Hospital</i>",
        "<a href=javascript:alert(1)>open</a>",
    ] {
        assert!(text.contains(inert), "{inert:?} is shown as text:\n{text}");
    }
    // Nothing ran, nothing became an element, and the page still enforces
    // Trusted Types: any innerHTML throws.
    let probe = b
        .js(
            "let blocked = false; try { document.createElement('div').innerHTML = '<b>x</b>'; } catch (e) { blocked = true; }
             return {
               pwned: window.__pwned === undefined ? null : String(window.__pwned),
               scripts: document.querySelectorAll('.app-frame script, .app-frame iframe, .app-frame svg[onload], .app-frame [onerror]').length,
               bold: document.querySelectorAll('.app-frame b, .app-frame i, .app-frame a').length,
               images: Array.from(document.querySelectorAll('.app-frame img')).map((i) => i.getAttribute('src').slice(0, 22)),
               drawn: Array.from(document.querySelectorAll('.app-frame img')).map((i) => i.complete && i.naturalWidth > 0),
               hostDialogs: document.querySelectorAll('[data-host-dialog]').length,
               innerHtmlBlocked: blocked,
             };",
            vec![],
        )
        .await;
    assert_eq!(probe["pwned"], json!(null), "{probe}");
    assert_eq!(probe["scripts"], json!(0), "{probe}");
    assert_eq!(probe["bold"], json!(0), "{probe}");
    assert_eq!(
        probe["images"],
        json!(["data:image/png;base64,", "/shell/images/hospital"]),
        "{probe}"
    );
    // The host's own image is drawn (served under the page's policy).
    assert_eq!(probe["drawn"], json!([true, true]), "{probe}");
    assert_eq!(probe["innerHtmlBlocked"], json!(true), "{probe}");
    // The imitation is not a host dialog: it lives inside the app's frame,
    // carries no host mark, and cannot know eve's phrase.
    assert_eq!(probe["hostDialogs"], json!(0));
    let frame = b.find(".app-frame").await.text().await.unwrap();
    assert!(frame.contains("Confirm payment"));
    assert!(!frame.contains("blue heron 42"), "{frame}");
    // Its field asking for a password carries the host's warning.
    let warning = b.find(".app-frame .v-field .host-warning").await;
    assert!(warning
        .text()
        .await
        .unwrap()
        .contains("never asks for your password"));
    b.finish().await;
}

#[tokio::test]
async fn revoking_a_permission_on_the_privacy_page_makes_the_next_use_ask_again() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let s = setup(&["document-wallet"]);
    let server = serve(&s);
    let mut b = Browser::start("privacy-revoke").await;
    sign_up(&mut b, &server, "ivy", "green comet 5").await;
    b.goto(&shell_url(&server, "#/app/dev.superapp.document-wallet"))
        .await;
    b.wait_text("Allow Document Wallet to ask to see your documents?")
        .await;
    b.shot("asked").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    b.click("dialog[data-host-dialog] button.primary").await;
    b.wait_text("You hold no documents yet.").await;
    b.shot("allowed").await;

    b.click("a[data-nav=privacy]").await;
    b.wait_text("Your decisions").await;
    b.wait_text("you allowed it to ask to see your documents")
        .await;
    b.shot("privacy").await;
    b.click("button[aria-label='Revoke: Document Wallet may ask to see your documents']")
        .await;
    b.wait_text("No decisions yet.").await;
    b.shot("revoked").await;
    // A new phrase shows in the next host dialog.
    b.fill("#new-phrase", "new heron 9").await;
    b.click_text("Save phrase").await;
    b.wait_text("always show your security phrase: new heron 9")
        .await;
    // Who may add her to groups: chosen here, kept by the host.
    let checked = "return document.querySelector('input[name=group_adds]:checked').value;";
    assert_eq!(b.js(checked, vec![]).await, json!("everyone"));
    b.click("input[name=group_adds][value=nobody]").await;
    b.click_text("Save choice").await;
    b.wait_text("Groups you are in already stay").await;
    b.shot("group-adds").await;
    let adds = b
        .js(
            "const r = await fetch('/api/v1/me', { credentials: 'same-origin' }); return (await r.json()).group_adds;",
            vec![],
        )
        .await;
    assert_eq!(adds, json!("nobody"));
    // The password changes on the same page, proven by the current one.
    b.fill("#current-password", "ivy-password").await;
    b.fill("#new-password", "ivy-new-password").await;
    b.fill("#repeat-password", "ivy-new-password").await;
    b.click_text("Change password").await;
    b.wait_text("Password changed.").await;

    b.goto(&shell_url(&server, "#/apps")).await;
    b.click_text("Open Document Wallet").await;
    b.wait_text("Allow Document Wallet to ask to see your documents?")
        .await;
    let mark = b
        .find("dialog[data-host-dialog] .phrase")
        .await
        .text()
        .await
        .unwrap();
    assert!(mark.contains("new heron 9"), "{mark}");
    b.shot("asked-again").await;

    // Signing out ends the session: the shell is back at sign-in, and the
    // API no longer knows the browser.
    b.click("dialog[data-host-dialog] button.quiet").await;
    b.click("#sign-out").await;
    b.wait_text("Sign in").await;
    let me = b
        .js(
            "const r = await fetch('/api/v1/me', { credentials: 'same-origin' }); return r.status;",
            vec![],
        )
        .await;
    assert_eq!(me, json!(401));
    b.goto(&shell_url(&server, "#/privacy")).await;
    b.wait_text("Create an account").await;
    b.shot("signed-out").await;
    b.finish().await;
}

/// A demo server: the bundled apps approved, alice and bob seeded.
fn demo() -> (tempfile::TempDir, Server) {
    demo_with(&[])
}

/// A demo server past the lines it prints before it serves (the URL and
/// the two logins).
fn demo_ready() -> (tempfile::TempDir, Server) {
    let (tmp, mut server) = demo();
    for _ in 0..3 {
        server.read_line();
    }
    (tmp, server)
}

/// The same with settings from the environment.
fn demo_with(env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = repo().join("plugins");
    let server = Server::start_with(
        &tmp.path().join("data"),
        &["--demo", "--plugins", plugins.to_str().unwrap()],
        env,
    );
    (tmp, server)
}

async fn sign_in(b: &mut Browser, server: &Server, name: &str) {
    sign_in_at(b, &shell_url(server, ""), name).await;
}

/// Sign in through the shell at `origin` (`http://host:port/`).
async fn sign_in_at(b: &mut Browser, origin: &str, name: &str) {
    b.goto(&format!("{origin}#/signin")).await;
    b.fill("#username", name).await;
    b.fill("#password", "demo-password").await;
    b.click_text("Sign in").await;
    b.wait_text("Sign out").await;
}

#[tokio::test]
async fn the_document_wallet_shares_only_the_fields_left_ticked() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let (_tmp, server) = demo_ready();
    // Bob is the verifier: his challenge, from his wallet.
    let mut bob = Client::new(&server);
    bob.token = Some(bob.login("bob", "demo-password").await);
    let wallet = "/apps/dev.superapp.document-wallet";
    let (_, started) = bob
        .post(&format!("{wallet}/events"), json!({"name": "verify-start"}))
        .await;
    let challenge = started
        .to_string()
        .split('"')
        .find(|s| s.starts_with("superapp-challenge:"))
        .unwrap()
        .to_string();

    let mut b = Browser::start("document-wallet").await;
    sign_in(&mut b, &server, "alice").await;
    b.goto(&shell_url(&server, "#/app/dev.superapp.document-wallet"))
        .await;
    b.wait_text("Allow Document Wallet to ask to see your documents?")
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    b.click("dialog[data-host-dialog] button.primary").await;
    b.wait_text("Civil Registry").await;
    b.shot("documents").await;
    b.click_text("Show your id card to a verifier").await;
    b.wait_text("The verifier's challenge").await;
    // Alice ticks two fields in the app, then unticks one in the host's dialog.
    b.click("input[type=checkbox][name=given-name]").await;
    b.click("input[type=checkbox][name=birth-date]").await;
    b.fill("input[name=challenge]", &challenge).await;
    b.shot("chosen").await;
    b.click_text("Create presentation").await;
    b.wait_text("Share your ID card?").await;
    b.click("dialog[data-host-dialog] input[type=checkbox][name=birth-date]")
        .await;
    b.shot("disclosure-dialog").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    b.click("dialog[data-host-dialog] button.primary").await;
    b.wait_text("Show this to the verifier").await;
    b.find(".app-frame svg.qr").await;
    b.shot("presentation").await;
    let presentation = b.find(".app-frame pre code").await.text().await.unwrap();

    let (_, checked) = bob
        .post(
            &format!("{wallet}/events"),
            json!({"name": "verify", "fields": {"presentation": presentation}}),
        )
        .await;
    let checked = checked.to_string();
    assert!(checked.contains("\"Valid\""), "{checked}");
    assert!(
        checked.contains("given-name") && checked.contains("Alice"),
        "{checked}"
    );
    assert!(
        !checked.contains("birth-date"),
        "unticked in the dialog: {checked}"
    );
    assert!(!checked.contains("1990-05-04"), "{checked}");
    b.finish().await;
}

#[tokio::test]
async fn the_shells_main_pages_have_no_serious_accessibility_violations() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let (_tmp, server) = demo_ready();
    let mut b = Browser::start("accessibility").await;
    b.goto(&shell_url(&server, "#/signin")).await;
    b.wait_text("Sign in").await;
    let mut problems = Vec::new();
    problems.extend(
        b.accessibility_problems()
            .await
            .into_iter()
            .map(|p| format!("sign-in: {p}")),
    );
    sign_in(&mut b, &server, "alice").await;
    for (page, wait) in [
        ("#/apps", "City Hospital"),
        ("#/wallet", "Documents"),
        ("#/privacy", "Your decisions"),
        ("#/chats", "Chats"),
        ("#/app/dev.superapp.hospital-booking", "General medicine"),
    ] {
        b.goto(&shell_url(&server, page)).await;
        b.wait_text(wait).await;
        b.shot(page.trim_start_matches("#/").replace('/', "-").as_str())
            .await;
        problems.extend(
            b.accessibility_problems()
                .await
                .into_iter()
                .map(|p| format!("{page}: {p}")),
        );
    }
    // A host dialog too.
    b.click_text("General medicine").await;
    b.click_text("Book ").await;
    b.click_text("Pay EUR").await;
    b.find("dialog[data-host-dialog]").await;
    b.shot("dialog").await;
    problems.extend(
        b.accessibility_problems()
            .await
            .into_iter()
            .map(|p| format!("payment dialog: {p}")),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    b.finish().await;
}

#[tokio::test]
async fn two_users_chat_live_and_a_deep_link_opens_its_app_after_sign_in() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let (_tmp, server) = demo_ready();
    let mut alice = Browser::start("chats-alice").await;
    let mut bob = Browser::start("chats-bob").await;
    sign_in(&mut alice, &server, "alice").await;
    sign_in(&mut bob, &server, "bob").await;
    bob.goto(&shell_url(&server, "#/chats")).await;
    bob.wait_text("No chats yet.").await;

    // Alice starts a direct chat and writes; bob's list updates live.
    alice.goto(&shell_url(&server, "#/chats")).await;
    alice.click("details summary").await;
    alice.fill("#new-direct", "bob").await;
    alice.click_text("Start chat").await;
    alice.wait_text("Message").await;
    alice.fill("#compose", "Hello Bob").await;
    alice.click_text("Send").await;
    alice.wait_text("Hello Bob").await;
    alice.shot("sent").await;
    bob.wait_text("Hello Bob").await;
    assert_eq!(bob.find(".unread").await.text().await.unwrap(), "1");
    bob.shot("unread").await;
    // The shell sent it over its live connection, not as a request: the
    // server counted reads of the conversation's messages, no send.
    let metrics = server.metrics().await;
    let messages_route = |method: &str| {
        metrics.lines().any(|l| {
            l.contains(&format!("method=\"{method}\""))
                && l.contains("route=\"/api/v1/conversations/{id}/messages\"")
        })
    };
    assert!(messages_route("GET"), "{metrics}");
    assert!(!messages_route("POST"), "{metrics}");

    // Bob answers; alice, in the conversation, sees it arrive.
    bob.click("a.chat-link").await;
    bob.wait_text("Alice Martin").await;
    bob.fill("#compose", "Hi Alice").await;
    bob.click_text("Send").await;
    alice.wait_text("Hi Alice").await;
    alice.shot("reply").await;
    // Alice's view read the conversation once, when it opened: her own
    // message came back as the send's answer and bob's as a push, each
    // shown as it came, with no request to read them again.
    assert_eq!(message_reads(&alice).await, 1);

    // A group chat.
    alice.goto(&shell_url(&server, "#/chats")).await;
    alice.click("details summary").await;
    alice.fill("#group-title", "Lunch").await;
    alice.fill("#group-members", "bob").await;
    alice.click_text("Create group").await;
    alice.wait_text("Lunch").await;
    // Enter sends; a message may hold line breaks (typed as Shift+Enter,
    // set here directly).
    alice
        .js(
            "document.querySelector('#compose').value = arguments[0];",
            vec![json!("Noon?\nOr one?")],
        )
        .await;
    alice.find("#compose").await.send_keys("\n").await.unwrap();
    alice.wait_text("Or one?").await;
    bob.goto(&shell_url(&server, "#/chats")).await;
    bob.wait_text("Noon?").await;
    bob.click_text("Lunch").await;
    // The chat list's preview says it too: wait for the conversation's own
    // message to be drawn.
    let mut lines = json!(null);
    for _ in 0..100 {
        lines = bob
            .js(
                "return [...document.querySelectorAll('.message .text')].map((t) => t.innerText).find((t) => t.startsWith('Noon?')) || null;",
                vec![],
            )
            .await;
        if !lines.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines, json!("Noon?\nOr one?"), "one message, two lines");
    bob.shot("group").await;
    alice.finish().await;
    bob.finish().await;

    // A deep link opens its app with its parameters, after sign-in, and
    // the payment dialog works from the keyboard.
    let mut carol = Browser::sized("deep-link", 360, 780).await;
    carol
        .goto(&shell_url(
            &server,
            "#/app/dev.superapp.hospital-booking?department=cardiology",
        ))
        .await;
    carol.wait_text("Sign in").await;
    carol.fill("#username", "alice").await;
    carol.fill("#password", "demo-password").await;
    carol.click_text("Sign in").await;
    carol.wait_text("Dr. Eva Lindqvist").await;
    carol.shot("deep-link").await;
    // The app's page offers its link, with a QR code the host drew.
    carol.click(".share-link summary").await;
    carol.find(".share-link svg.qr").await;
    let link = carol.find(".share-link code").await.text().await.unwrap();
    assert!(
        link.ends_with("/#/app/dev.superapp.hospital-booking?department=cardiology"),
        "{link}"
    );
    carol.shot("link-qr").await;
    carol.click_text("Book ").await;
    carol.click_text("Pay EUR 90.00").await;
    carol.find("dialog[data-host-dialog]").await;
    let focused = carol
        .js("return document.activeElement.getAttribute('type')", vec![])
        .await;
    assert_eq!(
        focused,
        json!("password"),
        "the dialog focuses the password first"
    );
    carol
        .fill(
            "dialog[data-host-dialog] input[type=password]",
            "demo-password",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    carol
        .find("dialog[data-host-dialog] button.primary")
        .await
        .send_keys("\u{E007}")
        .await
        .unwrap();
    carol.wait_text("Paid and booked").await;
    carol.shot("paid-by-keyboard").await;
    carol.finish().await;
}

/// How many times the page fetched a conversation's messages.
async fn message_reads(b: &Browser) -> u64 {
    b.js(
        "return performance.getEntriesByType('resource').filter((e) => e.name.includes('/messages?after=')).length",
        vec![],
    )
    .await
    .as_u64()
    .unwrap()
}

/// A demo server (the first value keeps it running); a cable to it the
/// test can cut, through which bob's browser reaches it (as a phone loses
/// its network, or its node goes away behind a balancer); the shell's
/// address through the cable; and alice, signed in over the API, with her
/// direct chat to bob.
async fn cabled_chat() -> (
    (tempfile::TempDir, Server),
    crate::cable::Cable,
    String,
    Client,
    String,
) {
    let (_tmp, server) = demo_ready();
    let port: u16 = server
        .base
        .trim_end_matches("/api/v1")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let cable = crate::cable::Cable::to(port).await;
    let origin = format!("http://127.0.0.1:{}/", cable.port);
    let mut alice = Client::new(&server);
    alice.token = Some(alice.login("alice", "demo-password").await);
    let chat = alice.direct_with("bob").await;
    ((_tmp, server), cable, origin, alice, chat)
}

/// Taken out of a group while their connection was down, a member whose
/// group is open on screen is told so when it comes back: no sending into
/// a group they are no longer in.
#[tokio::test]
async fn an_open_group_says_so_when_its_member_was_removed_while_offline() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let (_server, cable, origin, alice, _) = cabled_chat().await;
    let (_, group) = alice
        .post(
            "/conversations",
            json!({"kind": "group", "title": "Trip", "members": ["bob"]}),
        )
        .await;
    let group = group["id"].as_str().unwrap().to_string();
    alice.send(&group, "g1", "Welcome aboard").await;

    let mut bob = Browser::start("removed-offline").await;
    sign_in_at(&mut bob, &origin, "bob").await;
    bob.goto(&format!("{origin}#/chats/{group}")).await;
    bob.wait_text("Welcome aboard").await;
    let mut live = false;
    for i in 0..30 {
        alice
            .send(&group, &format!("g2-{i}"), "Are you live?")
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if bob.body_text().await.contains("Are you live?") {
            live = true;
            break;
        }
    }
    assert!(live, "no push reached the open group");

    cable.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut bob_api = Client::new(&_server.1);
    bob_api.token = Some(bob_api.login("bob", "demo-password").await);
    let bob_id = bob_api.get("/me").await.1["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = alice
        .call(
            reqwest::Method::DELETE,
            &format!("/conversations/{group}/members/{bob_id}"),
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    cable.restore();
    bob.wait_text("You are no longer in this group.").await;
    bob.shot("told").await;
    assert!(
        !bob.body_text().await.contains("members"),
        "no member count for whoever is out"
    );
    assert_eq!(
        bob.js(
            "return document.querySelectorAll('form.compose').length",
            vec![]
        )
        .await,
        json!(0)
    );
    bob.finish().await;
}

#[tokio::test]
async fn a_send_whose_answer_is_lost_goes_again_as_a_request_and_is_stored_once() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let (_server, cable, origin, alice, chat) = cabled_chat().await;

    let mut bob = Browser::start("send-fallback").await;
    sign_in_at(&mut bob, &origin, "bob").await;
    bob.goto(&format!("{origin}#/chats/{chat}")).await;
    bob.wait_text("Message").await;
    // From its next live connection on, the shell never hears a send's
    // answer, as when the answer is lost on its way back.
    bob.js(
        r#"const add = WebSocket.prototype.addEventListener;
        window.liveSockets = [];
        WebSocket.prototype.addEventListener = function (type, listener, options) {
          if (type !== 'message') return add.call(this, type, listener, options);
          window.liveSockets.push(this);
          return add.call(this, type, (event) => {
            if (!String(event.data).includes('"type":"sent"')) listener(event);
          }, options);
        };"#,
        vec![],
    )
    .await;
    cable.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cable.restore();
    let mut reconnected = false;
    for _ in 0..100 {
        let open = bob
            .js(
                "return window.liveSockets.some((s) => s.readyState === WebSocket.OPEN)",
                vec![],
            )
            .await;
        reconnected = open == json!(true);
        if reconnected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reconnected, "the shell opened no new live connection");

    bob.fill("#compose", "Loud and clear").await;
    bob.click_text("Send").await;
    // The live connection carried it: stored at once, while bob's shell
    // still waits for the answer it will not get.
    let mut stored = Vec::new();
    for _ in 0..50 {
        stored = alice.messages(&chat, 0).await;
        if !stored.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["text"], "Loud and clear");
    // Until it is answered, the shell shows the message as still sending,
    // and the compose box is free.
    let pending =
        "return [...document.querySelectorAll('.messages .pending')].map((m) => m.innerText)";
    let waiting = bob.js(pending, vec![]).await;
    let waiting = waiting.as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let waiting = waiting[0].as_str().unwrap();
    assert!(
        waiting.contains("Loud and clear") && waiting.contains("Sending"),
        "{waiting}"
    );
    assert_eq!(
        bob.js("return document.querySelector('#compose').value", vec![])
            .await,
        json!("")
    );
    bob.shot("waiting").await;
    // Ten seconds without an answer: the same send again as a request,
    // under the same client id, which the server answers with the stored
    // message instead of storing it twice.
    let mut answered = false;
    for _ in 0..150 {
        if bob.js(pending, vec![]).await == json!([]) {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "still sending after 15 s");
    bob.shot("answered").await;
    let text = bob.body_text().await;
    assert_eq!(text.matches("Loud and clear").count(), 1, "{text}");
    assert!(!text.contains("Sending"), "{text}");
    let stored = alice.messages(&chat, 0).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    bob.finish().await;
}

#[tokio::test]
async fn a_view_drawn_before_its_first_live_connection_opens_catches_up_when_it_does() {
    let _one_at_a_time = harness::one_at_a_time().await;
    // Bob may hold one live connection, and the test holds it: his shell's
    // own is refused (and tried again every 2 s) until the test lets go.
    let (_tmp, mut server) = demo_with(&[("SUPERAPP_MAX_LIVE_CONNECTIONS_PER_USER", "1")]);
    for _ in 0..3 {
        server.read_line();
    }
    let mut bob_api = Client::new(&server);
    bob_api.token = Some(bob_api.login("bob", "demo-password").await);
    let held = crate::common::ws_connect(&server, bob_api.token.as_ref().unwrap()).await;

    let mut bob = Browser::start("first-open").await;
    sign_in(&mut bob, &server, "bob").await;
    bob.goto(&shell_url(&server, "#/chats")).await;
    bob.wait_text("No chats yet.").await;
    let mut alice = Client::new(&server);
    alice.token = Some(alice.login("alice", "demo-password").await);
    let chat = alice.direct_with("bob").await;
    let (status, _) = alice
        .send(&chat, "early", "Sent before you were live")
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !bob.body_text().await.contains("Sent before you were live"),
        "the list was drawn before the message, and nothing was pushed"
    );

    // The shell's first live connection opens, and the list reads what it
    // missed (no push carries it: it was sent before).
    drop(held);
    bob.wait_text("Sent before you were live").await;
    bob.shot("first-open").await;
    bob.finish().await;
}

#[tokio::test]
async fn an_open_chat_shows_what_was_sent_while_its_connection_was_down() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let (_server, cable, origin, alice, chat) = cabled_chat().await;
    alice.send(&chat, "r1", "Before the tunnel").await;

    let mut bob = Browser::start("resync").await;
    sign_in_at(&mut bob, &origin, "bob").await;
    bob.goto(&format!("{origin}#/chats/{chat}")).await;
    bob.wait_text("Before the tunnel").await;
    // A push proves the live connection is open. The shell may still be
    // opening it (a message sent before then is read when it opens), so
    // send until one shows.
    let mut shown = false;
    for i in 0..30 {
        alice
            .send(&chat, &format!("r2-{i}"), "Entering the tunnel")
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if bob.body_text().await.contains("Entering the tunnel") {
            shown = true;
            break;
        }
    }
    assert!(shown, "no push reached the open chat");

    cable.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = alice.send(&chat, "r3", "Are you there?").await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !bob.body_text().await.contains("Are you there?"),
        "nothing can reach bob while the cable is cut"
    );
    // A send that cannot reach the server says so, and its text stays in
    // the box to go again.
    bob.fill("#compose", "Still here").await;
    bob.click_text("Send").await;
    bob.wait_text("Something went wrong").await;
    bob.shot("cut").await;
    assert_eq!(
        bob.js("return document.querySelector('#compose').value", vec![])
            .await,
        json!("Still here")
    );
    assert_eq!(
        bob.js(
            "return document.querySelectorAll('.messages .pending').length",
            vec![]
        )
        .await,
        json!(0)
    );

    // Back: the shell reconnects and reads what it missed from the store.
    cable.restore();
    bob.wait_text("Are you there?").await;
    bob.shot("caught-up").await;
    let text = bob.body_text().await;
    assert_eq!(text.matches("Are you there?").count(), 1, "{text}");
    // The kept text goes now, once.
    bob.click_text("Send").await;
    let mut stored = Vec::new();
    for _ in 0..100 {
        stored = alice.messages(&chat, 0).await;
        if stored.last().is_some_and(|m| m["text"] == "Still here") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let texts: Vec<_> = stored.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts.first(), Some(&"Before the tunnel"));
    assert_eq!(texts[texts.len() - 2..], ["Are you there?", "Still here"]);
    // Shown once, as stored (not as the bubble of a send still waiting).
    let mut sending = json!(1);
    for _ in 0..100 {
        sending = bob
            .js(
                "return document.querySelectorAll('.messages .pending').length",
                vec![],
            )
            .await;
        if sending == json!(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sending, json!(0));
    bob.wait_text("Still here").await;
    let text = bob.body_text().await;
    assert_eq!(text.matches("Still here").count(), 1, "{text}");
    bob.finish().await;
}

/// Someone who names themselves after a service cannot pass for its chat:
/// a person's chat shows their username and never the host's app mark. A
/// word longer than the screen stays inside its bubble, and a conversation
/// opens at its newest message.
#[tokio::test]
async fn a_person_named_like_a_service_shows_their_username_and_long_words_stay_in_the_bubble() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let (_tmp, server) = demo_ready();
    let mut eve = Client::new(&server);
    let (status, body) = eve
        .post(
            "/accounts",
            json!({"username": "eve", "display_name": "City Hospital", "password": "eve-password"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    eve.token = Some(eve.login("eve", "eve-password").await);
    let chat = eve.direct_with("alice").await;
    for i in 0..30 {
        eve.send(&chat, &format!("m{i}"), &format!("Reminder {i}"))
            .await;
    }
    let long = format!("nospaces:{}", "x".repeat(600));
    eve.send(&chat, "long", &long).await;

    let mut b = Browser::sized("impersonation", 390, 844).await;
    sign_in(&mut b, &server, "alice").await;
    b.goto(&shell_url(&server, "#/chats")).await;
    b.wait_text("@eve").await;
    b.shot("list").await;
    let marks = b
        .js(
            "const a = [...document.querySelectorAll('a.chat-link')].find((l) => l.textContent.includes('@eve'));\n\
             return [a.classList.contains('kind-direct'), a.querySelectorAll('.host-badge').length];",
            vec![],
        )
        .await;
    assert_eq!(marks, json!([true, 0]), "a person's chat has no app mark");

    b.goto(&shell_url(&server, &format!("#/chats/{chat}")))
        .await;
    b.wait_text("nospaces:").await;
    b.wait_text("City Hospital @eve").await;
    b.shot("conversation").await;
    let layout = b
        .js(
            "const d = document.documentElement;\n\
             return [d.scrollWidth <= window.innerWidth, window.scrollY + window.innerHeight >= d.scrollHeight - 80, window.scrollY > 0];",
            vec![],
        )
        .await;
    assert_eq!(
        layout,
        json!([true, true, true]),
        "no sideways scrolling; opened at the newest message"
    );

    // A group's members: alice adds eve, which the group records; eve's
    // leaving shows live; alice leaving in another tab ends her sending
    // here, and the group is gone from her list.
    let mut alice = Client::new(&server);
    alice.token = Some(alice.login("alice", "demo-password").await);
    let (_, group) = alice
        .post(
            "/conversations",
            json!({"kind": "group", "title": "Book club", "members": ["bob"]}),
        )
        .await;
    let group = group["id"].as_str().unwrap().to_string();
    b.goto(&shell_url(&server, &format!("#/chats/{group}")))
        .await;
    b.click("details.members summary").await;
    b.fill("#add-member", "eve").await;
    b.click_text("Add").await;
    b.wait_text("Members (3)").await;
    b.click("details.members summary").await;
    b.wait_text("City Hospital @eve").await;
    b.wait_text("added City Hospital (@eve)").await;
    b.shot("members").await;
    let eve_id = eve.get("/me").await.1["id"].as_str().unwrap().to_string();
    let (s, _) = eve
        .call(
            reqwest::Method::DELETE,
            &format!("/conversations/{group}/members/{eve_id}"),
            None,
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::NO_CONTENT);
    b.wait_text("City Hospital (@eve) left").await;
    b.wait_text("Group · 2 members").await;
    let alice_id = alice.get("/me").await.1["id"].as_str().unwrap().to_string();
    let (s, _) = alice
        .call(
            reqwest::Method::DELETE,
            &format!("/conversations/{group}/members/{alice_id}"),
            None,
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::NO_CONTENT);
    b.wait_text("You are no longer in this group.").await;
    let drawn = b
        .js(
            "return [document.querySelectorAll('form.compose').length, document.querySelectorAll('details.members').length, document.querySelectorAll('.member-change').length];",
            vec![],
        )
        .await;
    assert_eq!(
        drawn,
        json!([0, 0, 3]),
        "no sending, no members; three changes shown"
    );
    b.shot("left").await;
    // Added back by bob, she sees the group again, and leaves it here.
    let mut bob = Client::new(&server);
    bob.token = Some(bob.login("bob", "demo-password").await);
    let (s, _) = bob
        .post(
            &format!("/conversations/{group}/members"),
            json!({"username": "alice"}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK);
    b.wait_text("Bob Okoye (@bob) added Alice Martin (@alice)")
        .await;
    b.click("details.members summary").await;
    b.click_text("Leave group").await;
    b.wait_text("New chat").await;
    let (_, listed) = alice.get("/conversations").await;
    assert!(!listed.to_string().contains("Book club"), "{listed}");
    b.finish().await;
}

/// A dialog the user puts off waits in the host bar instead of coming back
/// at every tap, and never stands in front of the dialog of the app on
/// screen; Enter in the payment's password field pays.
#[tokio::test]
async fn a_put_off_dialog_waits_in_the_host_bar_and_the_open_apps_payment_comes_first() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let (_tmp, server) = demo_ready();
    let mut b = Browser::start("put-off").await;
    sign_in(&mut b, &server, "alice").await;
    b.goto(&shell_url(&server, "#/app/dev.superapp.document-wallet"))
        .await;
    b.wait_text("Allow Document Wallet to ask to see your documents?")
        .await;
    b.click("dialog[data-host-dialog] button.quiet").await;
    b.wait_text("Waiting for you (1)").await;

    b.goto(&shell_url(&server, "#/app/dev.superapp.city-payments"))
        .await;
    b.wait_text("Your bills").await;
    b.click_text("Pay EUR").await;
    // The city's sheet, not the wallet's put-off question.
    b.wait_text("Confirm payment").await;
    let kinds = b
        .js(
            "return [...document.querySelectorAll('dialog[data-host-dialog]')].map((d) => d.className);",
            vec![],
        )
        .await;
    assert_eq!(kinds, json!(["host-dialog kind-payment"]));
    b.shot("payment-first").await;
    // Put off too: both wait in the host bar, and come back from it.
    b.click("dialog[data-host-dialog] button.quiet").await;
    b.wait_text("Waiting for you (2)").await;
    // Pressing Pay in the app again brings its sheet back (the same order,
    // put off a moment ago); put off once more, it waits with the other.
    b.goto(&shell_url(&server, "#/chats")).await;
    b.goto(&shell_url(&server, "#/app/dev.superapp.city-payments"))
        .await;
    b.wait_text("Your bills").await;
    b.click_text("Pay EUR").await;
    b.find("dialog[data-host-dialog][open].kind-payment").await;
    b.shot("payment-again").await;
    b.click("dialog[data-host-dialog] button.quiet").await;
    b.wait_text("Waiting for you (2)").await;
    b.click("#waiting").await;
    // Both come back, one at a time: the wallet's is put off again, and
    // the payment confirmed with Enter.
    let mut seen = Vec::new();
    for round in 0.. {
        assert!(round < 300, "the dialogs never came back: {seen:?}");
        if seen.len() == 2 {
            break;
        }
        let open = b
            .js(
                "const d = document.querySelector('dialog[data-host-dialog][open]'); return d ? d.className : '';",
                vec![],
            )
            .await;
        let kind = open.as_str().unwrap_or_default().to_string();
        if kind.is_empty() || seen.last() == Some(&kind) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if kind.contains("kind-payment") {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            b.fill(
                "dialog[data-host-dialog] input[type=password]",
                "demo-password\n",
            )
            .await;
        } else {
            b.click("dialog[data-host-dialog] button.quiet").await;
        }
        seen.push(kind);
    }
    seen.sort();
    assert_eq!(
        seen,
        ["host-dialog kind-consent", "host-dialog kind-payment"]
    );
    // The app on screen draws its answer.
    b.wait_text("Paid. Thank you!").await;
    b.wait_text("Waiting for you (1)").await;
    b.shot("paid").await;
    let (_, waiting) = {
        let mut alice = Client::new(&server);
        alice.token = Some(alice.login("alice", "demo-password").await);
        alice.get("/prompts").await
    };
    let waiting = waiting.as_array().unwrap().clone();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0]["app"], "dev.superapp.document-wallet");
    b.finish().await;
}

/// The number of chats the list shows, once it has settled on `n`.
async fn chats_listed(b: &Browser, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let shown = b
            .js(
                "return document.querySelectorAll('a.chat-link').length",
                vec![],
            )
            .await
            .as_u64()
            .unwrap();
        if shown == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{shown} chats listed, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_long_chat_list_comes_a_page_at_a_time_and_names_each_direct_chat() {
    let _one_at_a_time = harness::one_at_a_time().await;
    // Cheap password hashing and room for many sign-ups: 101 people write
    // to zoe.
    let server = Server::start(&[
        ("SUPERAPP_PASSWORD_ITERATIONS", "1"),
        ("SUPERAPP_SIGNUPS_PER_CLIENT", "1000"),
    ]);
    let zoe = Client::signed_up(&server, "zoe").await;
    for i in 0..101 {
        let name = format!("friend{i:03}");
        let friend = Client::signed_up(&server, &name).await;
        let chat = friend.direct_with("zoe").await;
        let (status, body) = friend
            .send(&chat, "hi", &format!("hello from {name}"))
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    }
    let (_, first) = zoe.get("/conversations").await;
    let first = first.as_array().unwrap().clone();
    assert_eq!(first.len(), 100);
    // Who is on the second page: the one friend not on the first.
    let listed: Vec<&str> = first
        .iter()
        .map(|c| c["with"]["username"].as_str().unwrap())
        .collect();
    let older = (0..101)
        .map(|i| format!("friend{i:03}"))
        .find(|name| !listed.contains(&name.as_str()))
        .unwrap();
    let newest = listed[0];
    // Messages keep milliseconds: the last to write is first, the first
    // to write is the one left for the next page.
    assert_eq!((newest, older.as_str()), ("friend100", "friend000"));

    let mut b = Browser::start("long-chat-list").await;
    b.goto(&shell_url(&server, "#/signin")).await;
    b.fill("#username", "zoe").await;
    b.fill("#password", "zoe-password").await;
    b.click_text("Sign in").await;
    b.wait_text("Sign out").await;
    b.goto(&shell_url(&server, "#/chats")).await;
    // The newest hundred, each direct chat under its person's name, and the
    // oldest behind "Show older chats".
    b.wait_text(&format!("hello from {newest}")).await;
    chats_listed(&b, 100).await;
    let text = b.body_text().await;
    assert!(
        text.contains(&newest.to_uppercase()) && text.contains(&format!("@{newest}")),
        "{text}"
    );
    assert!(!text.contains(&older), "{text}");
    b.shot("first-page").await;
    b.click("#older-chats").await;
    b.wait_text(&format!("hello from {older}")).await;
    chats_listed(&b, 101).await;
    assert!(b.body_text().await.contains(&older.to_uppercase()));
    let more = b
        .js(
            "return document.querySelector('#older-chats') !== null",
            vec![],
        )
        .await;
    assert_eq!(more, json!(false), "nothing older is left");
    b.shot("all").await;
    // A new message moves its chat to the top without losing the older page.
    let (_, chats) = zoe.get("/conversations?limit=1").await;
    let newest = chats[0]["id"].as_str().unwrap().to_string();
    zoe.send(&newest, "back", "zoe writes back").await;
    b.wait_text("zoe writes back").await;
    chats_listed(&b, 101).await;
    b.finish().await;
}

/// The first button value for `event` in an app's answered view.
fn button_value(view: &serde_json::Value, event: &str) -> Option<String> {
    fn walk(node: &serde_json::Value, event: &str) -> Option<String> {
        if node["type"] == "button" && node["event"] == event {
            return node["value"].as_str().map(str::to_string);
        }
        node["children"]
            .as_array()?
            .iter()
            .find_map(|child| walk(child, event))
    }
    walk(&view["view"]["body"], event)
}

#[tokio::test]
async fn a_session_ended_elsewhere_leaves_the_page_and_what_waited_comes_up_after_sign_in() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let (_tmp, server) = demo_ready();
    let mut b = Browser::start("session-ended").await;
    sign_in(&mut b, &server, "alice").await;
    b.goto(&shell_url(&server, "#/wallet")).await;
    b.wait_text("EUR 200.00").await;
    b.shot("wallet").await;

    // Alice changes her password on another device: every other session
    // ends, this page's with it.
    let mut phone = Client::new(&server);
    phone.token = Some(phone.login("alice", "demo-password").await);
    let (status, body) = phone
        .call(
            reqwest::Method::PUT,
            "/me/password",
            Some(json!({"current_password": "demo-password", "new_password": "a new password 2"})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "{body}");
    b.wait_text("Your session ended: sign in again.").await;
    let text = b.body_text().await;
    assert!(
        !text.contains("EUR 200.00") && !text.contains("Sign out"),
        "{text}"
    );
    b.shot("ended").await;

    // While she is away, City Payments asks her to pay a bill.
    let city = "dev.superapp.city-payments";
    let (status, home) = phone.post(&format!("/apps/{city}/launch"), json!({})).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{home}");
    let bill = button_value(&home, "pay").expect("a bill to pay");
    let (status, asked) = phone
        .post(
            &format!("/apps/{city}/events"),
            json!({"name": "pay", "value": bill, "fields": {}}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{asked}");

    // Signed in again, she is back on her wallet and the payment sheet is
    // in front of her.
    b.fill("#username", "alice").await;
    b.fill("#password", "a new password 2").await;
    b.click_text("Sign in").await;
    b.wait_text("Confirm payment").await;
    b.shot("waiting-payment").await;

    // A wrong password first, then hers: the privacy page tells the two
    // apart, with the amount.
    let password = "dialog[data-host-dialog] input[type=password]";
    let confirm = "dialog[data-host-dialog] button.primary";
    tokio::time::sleep(Duration::from_millis(1000)).await;
    b.fill(password, "not her password").await;
    b.click(confirm).await;
    b.wait_text("wrong").await;
    b.shot("wrong-password").await;
    b.fill(password, "a new password 2").await;
    b.click(confirm).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b
        .js(
            "return document.querySelector('dialog[data-host-dialog][open]') !== null",
            vec![],
        )
        .await
        == json!(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the dialog stays open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The wallet on screen shows the payment: the balance is no longer
    // the top-up's.
    b.wait_text("Electricity").await;
    let wallet = b.body_text().await;
    assert_eq!(wallet.matches("EUR 200.00").count(), 1, "{wallet}");
    b.goto(&shell_url(&server, "#/privacy")).await;
    b.wait_text("you confirmed a payment of EUR").await;
    let text = b.body_text().await;
    assert!(text.contains("was not confirmed: wrong password"), "{text}");
    assert_eq!(
        text.matches("you confirmed a payment").count(),
        1,
        "one payment, one confirmation: {text}"
    );
    b.shot("privacy").await;
    b.finish().await;
}

/// Where the keyboard is and which account a tab acts for hold: "Skip to
/// content" stays on the page and focuses it; a host dialog arms only
/// while in sight (leaving the window or hiding the tab starts its wait
/// again, for both answers); after the app draws its answer, focus is on
/// its new view's heading, not lost on the page; and a tab whose browser
/// signed another account in elsewhere starts over as that account rather
/// than go on showing the one before.
#[tokio::test]
async fn keyboard_focus_dialog_arming_and_tabs_follow_the_user() {
    let _one_at_a_time = harness::one_at_a_time().await;
    let (_tmp, server) = demo_ready();
    let mut b = Browser::start("keyboard-and-tabs").await;
    sign_in(&mut b, &server, "alice").await;

    b.goto(&shell_url(&server, "#/wallet")).await;
    b.wait_text("Wallet").await;
    let skipped = b
        .js(
            "document.querySelector('a.skip').click(); return [location.hash, document.activeElement.id];",
            vec![],
        )
        .await;
    assert_eq!(skipped, json!(["#/wallet", "main"]));

    b.goto(&shell_url(&server, "#/app/dev.superapp.city-payments"))
        .await;
    b.wait_text("Your bills").await;
    b.click_text("Pay EUR").await;
    b.find("dialog[data-host-dialog][open].kind-payment").await;
    let buttons = "return [...document.querySelectorAll('dialog[data-host-dialog] .dialog-actions button')].map((b) => b.disabled);";
    // The window loses focus before the dialog has been in sight long
    // enough: nothing arms, however long it waits.
    b.js(
        "window.dispatchEvent(new Event('blur')); return null;",
        vec![],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(b.js(buttons, vec![]).await, json!([false, true, true]));
    // Back in the window: armed after the wait, from then on.
    b.js(
        "window.dispatchEvent(new Event('focus')); return null;",
        vec![],
    )
    .await;
    assert_eq!(b.js(buttons, vec![]).await, json!([false, true, true]));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(b.js(buttons, vec![]).await, json!([false, false, false]));
    // The tab hidden: disarmed again; shown: armed after the wait.
    let hide = "Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => arguments[0] }); document.dispatchEvent(new Event('visibilitychange')); return null;";
    b.js(hide, vec![json!("hidden")]).await;
    assert_eq!(b.js(buttons, vec![]).await, json!([false, true, true]));
    b.js(hide, vec![json!("visible")]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(b.js(buttons, vec![]).await, json!([false, false, false]));
    // The described dialog: the amount and payee are read with it.
    let described = b
        .js(
            "const d = document.querySelector('dialog[data-host-dialog][open]'); return document.getElementById(d.getAttribute('aria-describedby')).textContent;",
            vec![],
        )
        .await;
    assert!(
        described.as_str().unwrap_or_default().contains("EUR"),
        "{described}"
    );
    b.fill(
        "dialog[data-host-dialog] input[type=password]",
        "demo-password\n",
    )
    .await;
    b.wait_text("Paid. Thank you!").await;
    let focus = "const a = document.activeElement; return a && a.closest('.app-view') !== null && /^H[1-6]$/.test(a.tagName);";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b.js(focus, vec![]).await != json!(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "focus is not on the new view's heading: {}",
            b.js(
                "return document.activeElement.outerHTML.slice(0, 200);",
                vec![]
            )
            .await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A second tab of the same browser signs bob in: the first one starts
    // over as bob, never showing alice's name (or phrase) over his session.
    let first = b.client.window().await.unwrap();
    let second = b.client.new_window(true).await.unwrap().handle;
    b.client.switch_to_window(second).await.unwrap();
    sign_in(&mut b, &server, "bob").await;
    b.client.switch_to_window(first).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let who = b
            .js("return document.getElementById('who').textContent;", vec![])
            .await;
        if who == json!("Bob Okoye") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first tab still shows {who}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // From the chat list: the page it was on was alice's.
    let hash = b.js("return location.hash;", vec![]).await;
    assert_eq!(hash, json!("#/chats"));
    b.shot("first-tab-as-bob").await;
    b.finish().await;
}
