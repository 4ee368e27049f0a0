//! The workflows, driven without HTTP: a host on a temporary data
//! directory, its services called the way the handlers call them.

use std::net::{IpAddr, Ipv4Addr};

use superapp_core::{Capability, ConsentLevel, Manifest};
use superapp_services::consent::{ConsentError, ConsentState, Decision, PromptKind, PromptStatus};
use superapp_services::identity::User;
use superapp_services::ledger::orders::{NewOrder, OrderState};
use superapp_services::ledger::{AccountKind, AccountRef};

use super::{Answer, Host, HostError, Transfer};
use crate::config::FileConfig;

const ONCE: ConsentLevel = ConsentLevel::OncePerApp;
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The session the tests' answers come from (its throttle window).
const SESSION: &str = "session-of-the-test";

fn host(dir: &std::path::Path) -> Host {
    let text = format!(
        "data-dir = {:?}\npassword-iterations = 1000\n",
        dir.display().to_string()
    );
    let config: FileConfig = toml::from_str(&text).unwrap();
    Host::open(&config.resolve().unwrap()).unwrap()
}

fn shop() -> Manifest {
    Manifest::parse(
        "id = \"org.example.shop\"\nname = \"Shop\"\nversion = \"1.0.0\"\npublisher = \"Example\"\ndescription = \"d\"\n\
         [capabilities.profile]\nreason = \"to greet you\"\n[capabilities.payments]\nreason = \"to sell\"\n",
    )
    .unwrap()
}

async fn user(host: &Host, name: &str) -> User {
    host.identity
        .register(name, name, "a long password", None)
        .await
        .unwrap()
}

fn balance(host: &Host, user: &User) -> i64 {
    host.ledger
        .accounts_of(AccountKind::User, &user.id)
        .unwrap()
        .iter()
        .find(|a| a.id == AccountRef::user(&user.id, "EUR"))
        .map_or(0, |a| a.balance)
}

#[tokio::test]
async fn answering_a_consent_prompt_grants_only_for_its_own_user() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let (alice, bob) = (user(&host, "alice").await, user(&host, "bob").await);
    let app = shop();
    assert_eq!(
        host.consent
            .check(&alice.id, &app, Capability::Profile, ONCE, None),
        ConsentState::Required
    );
    let prompt = host.consent.pending(&alice.id).unwrap().remove(0);

    let stolen = host
        .answer_prompt(&bob, SESSION, CLIENT, &prompt.id, true, Answer::default())
        .await;
    assert!(matches!(stolen, Err(HostError::Consent(_))), "{stolen:?}");

    let answered = host
        .answer_prompt(&alice, SESSION, CLIENT, &prompt.id, true, Answer::default())
        .await
        .unwrap();
    assert_eq!(answered.prompt.status, PromptStatus::Approved);
    // The app is not installed here, so it drew nothing; the grant stands.
    assert!(answered.view.is_none());
    assert_eq!(
        host.consent
            .check(&alice.id, &app, Capability::Profile, ONCE, None),
        ConsentState::Granted
    );
    assert_eq!(
        host.revoke_grant(&alice, &app.id, Capability::Profile, false)
            .await
            .unwrap(),
        Decision::Granted
    );
    assert!(matches!(
        host.revoke_grant(&bob, &app.id, Capability::Profile, false)
            .await,
        Err(HostError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_payment_sheet_moves_money_only_with_the_right_password() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let alice = user(&host, "alice").await;
    host.ledger
        .topup(&alice.id, 1_000, "EUR", "t1", "test")
        .unwrap();
    let order = NewOrder {
        amount: 300,
        currency: "EUR".into(),
        description: "a cup".into(),
        idempotency_key: "k1".into(),
        expires_in: None,
    };
    let order = host.orders.request(&alice.id, &shop(), &order).unwrap();
    let prompt = host.consent.prompt(&alice.id, &order.id).unwrap();
    assert_eq!(prompt.kind(), PromptKind::Payment);

    let no_password = host
        .answer_prompt(&alice, SESSION, CLIENT, &order.id, true, Answer::default())
        .await;
    assert!(matches!(no_password, Err(HostError::Invalid(_))));
    let wrong = Answer {
        password: Some("not the password".into()),
        ..Answer::default()
    };
    let wrong = host
        .answer_prompt(&alice, SESSION, CLIENT, &order.id, true, wrong)
        .await;
    assert!(matches!(wrong, Err(HostError::WrongPassword)), "{wrong:?}");
    assert_eq!(balance(&host, &alice), 1_000);

    let right = Answer {
        password: Some("a long password".into()),
        ..Answer::default()
    };
    let answered = host
        .answer_prompt(&alice, SESSION, CLIENT, &order.id, true, right)
        .await
        .unwrap();
    assert_eq!(answered.order.unwrap().state, OrderState::Paid);
    assert_eq!(balance(&host, &alice), 700);
    // Answering again pays nothing more.
    let again = Answer {
        password: Some("a long password".into()),
        ..Answer::default()
    };
    assert!(host
        .answer_prompt(&alice, SESSION, CLIENT, &order.id, true, again)
        .await
        .is_err());
    assert_eq!(balance(&host, &alice), 700);
}

#[tokio::test]
async fn a_transfer_is_idempotent_and_refuses_bad_input_before_moving_money() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let (alice, bob) = (user(&host, "alice").await, user(&host, "bob").await);
    host.ledger
        .topup(&alice.id, 500, "EUR", "t1", "test")
        .unwrap();
    let transfer = |key: &str, to: &str| Transfer {
        to: to.into(),
        amount: 200,
        currency: "EUR".into(),
        memo: String::new(),
        idempotency_key: key.into(),
        password: "a long password".into(),
    };
    assert!(matches!(
        host.transfer(&alice, SESSION, CLIENT, transfer("", "bob"))
            .await,
        Err(HostError::Invalid(_))
    ));
    assert!(matches!(
        host.transfer(&alice, SESSION, CLIENT, transfer("t1", "nobody"))
            .await,
        Err(HostError::NotFound(_))
    ));
    let first = host
        .transfer(&alice, SESSION, CLIENT, transfer("t1", "bob"))
        .await
        .unwrap();
    let second = host
        .transfer(&alice, SESSION, CLIENT, transfer("t1", "bob"))
        .await
        .unwrap();
    assert_eq!(first.transfer.id, second.transfer.id);
    assert_eq!((balance(&host, &alice), balance(&host, &bob)), (300, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_naming_a_wrong_deadline_cannot_expire_an_order_early() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let alice = user(&host, "alice").await;
    let order = NewOrder {
        amount: 300,
        currency: "EUR".into(),
        description: "a cup".into(),
        idempotency_key: "k1".into(),
        expires_in: None,
    };
    let order = host.orders.request(&alice.id, &shop(), &order).unwrap();
    // As a job forged on the bus would say: due long ago.
    let forged = super::Job::ExpireOrder {
        id: order.id.clone(),
        at: 0,
    };
    host.run_job(&forged, false).await.unwrap();
    host.run_job(&forged, true).await.unwrap();
    let kept = host.orders.get(&order.id).unwrap().unwrap();
    assert_eq!(kept.state, OrderState::Pending, "not due yet: left alone");
    // Its own deadline still stands: nothing is due before it.
    let now = superapp_core::now_secs();
    assert!(host.due_expiries(now, 10).unwrap().is_empty());
    let due = host.due_expiries(order.expires_at, 10).unwrap();
    assert_eq!(
        due,
        [super::Job::ExpireOrder {
            id: order.id.clone(),
            at: order.expires_at
        }]
    );
}

/// A share sheet the app drew before the user revoked its `notify` grant
/// cannot be approved after, even where a crash kept the revocation from
/// declining it: it is declined then, and answered as such.
#[tokio::test]
async fn a_sheet_drawn_before_a_revocation_cannot_be_approved_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let alice = user(&host, "alice").await;
    let bob = user(&host, "bob").await;
    let app = Manifest::parse(
        "id = \"org.example.news\"\nname = \"News\"\nversion = \"1.0.0\"\npublisher = \"Example\"\ndescription = \"d\"\n\
         [capabilities.notify]\nreason = \"to tell you\"\n",
    )
    .unwrap();
    assert_eq!(
        host.consent
            .check(&alice.id, &app, Capability::Notify, ONCE, None),
        ConsentState::Required
    );
    let consent = host.consent.pending(&alice.id).unwrap().remove(0);
    host.answer_prompt(
        &alice,
        SESSION,
        CLIENT,
        &consent.id,
        true,
        Answer::default(),
    )
    .await
    .unwrap();
    let card = superapp_services::messaging::Card {
        app_id: app.id.clone(),
        title: "Read this".into(),
        description: "d".into(),
        params: vec![],
    };
    host.consent.ask_share(&alice.id, &app, card).unwrap();
    let share = host.consent.pending(&alice.id).unwrap().remove(0);
    assert_eq!(share.kind(), PromptKind::ShareCard);
    // The revocation recorded, and nothing after it (a crash).
    host.consent
        .revoke(&alice.id, &app.id, Capability::Notify, false)
        .unwrap();
    let chat = host.messaging.direct(&alice, &bob).await.unwrap().id;
    let approve = Answer {
        conversation_id: Some(chat),
        ..Answer::default()
    };
    let refused = host
        .answer_prompt(&alice, SESSION, CLIENT, &share.id, true, approve)
        .await;
    assert!(
        matches!(refused, Err(HostError::Consent(ConsentError::Answered))),
        "{refused:?}"
    );
    let declined = host.consent.prompt(&alice.id, &share.id).unwrap();
    assert_eq!(declined.status, PromptStatus::Denied);
    assert!(host.consent.pending(&alice.id).unwrap().is_empty());
}
