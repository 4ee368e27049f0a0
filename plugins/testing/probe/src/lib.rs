//! Test fixture: each action calls one capability and returns the answer as
//! text, `ok: …` or `err: <kind>: …`, so host tests can check every
//! capability's allowed and denied cases through a real guest.

use superapp_sdk::prelude::*;
use superapp_sdk::DocumentOutcome;

struct Probe;

fn kind(e: &Error) -> &'static str {
    match e {
        Error::Denied(_) => "denied",
        Error::ConsentRequired(_) => "consent-required",
        Error::QuotaExceeded(_) => "quota-exceeded",
        Error::Invalid(_) => "invalid",
        Error::NotFound(_) => "not-found",
        Error::Unavailable(_) => "unavailable",
    }
}

fn report<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Ok(v) => format!("ok: {v:?}"),
        Err(e) => format!("err: {}: {e:?}", kind(&e)),
    }
}

fn bytes(value: &Option<String>) -> Vec<u8> {
    value.clone().unwrap_or_default().into_bytes()
}

impl App for Probe {
    fn launch(ctx: &Context) -> Result<View, AppError> {
        // Launch parameters come from app cards and links.
        Ok(View::new("probe").text(format!("ready {:?}", ctx.params)))
    }

    fn event(_ctx: &Context, event: Event) -> Result<View, AppError> {
        let Event::Action(a) = event else {
            // Host events are also kept, so a test can read the last one
            // even when nobody saw the view drawn for it.
            if let Event::Document(DocumentOutcome::Shared(p)) = &event {
                let _ = storage::set(b"last-envelope", p.envelope.as_bytes());
            }
            // Asked to, it asks for a payment again in the host's event
            // (as an app that will not take no for an answer), and keeps
            // what the host said.
            if let (Event::Payment(result), Ok(Some(_))) = (&event, storage::get(b"ask-again")) {
                let again = payments::request(&payments::PaymentRequest {
                    amount: 100,
                    currency: "EUR".into(),
                    description: "again".into(),
                    idempotency_key: format!("again-{}", result.order_id),
                    expires_in: None,
                });
                let _ = storage::set(b"asked-again", report(again).as_bytes());
            }
            let text = format!("event: {event:?}");
            let _ = storage::set(b"last-event", text.as_bytes());
            return Ok(View::new("probe").text(text));
        };
        let key = a.field("key").unwrap_or("k").as_bytes().to_vec();
        let out = match a.name.as_str() {
            "log" => {
                log::info("probe line");
                "ok: logged".to_string()
            }
            "identity" => report(identity::user_id()),
            "profile" => report(profile::get().map(|p| p.display_name)),
            // `value` profile reads in a row, stopping at the first error:
            // a loop of calls that need the user's agreement.
            "profile-many" => {
                let n: u32 = a.value.as_deref().unwrap_or("0").parse().unwrap_or(0);
                let mut made = 0;
                let result = (0..n).try_for_each(|_| {
                    profile::get()?;
                    made += 1;
                    Ok(())
                });
                format!("{made} then {}", report(result))
            }
            "storage-get" => report(storage::get(&key)),
            // `value` reads in a row, stopping at the first error: an app
            // that makes many host calls in one event.
            "storage-get-many" => {
                let n: u32 = a.value.as_deref().unwrap_or("0").parse().unwrap_or(0);
                report(
                    (0..n)
                        .try_for_each(|_| storage::get(&key).map(drop))
                        .map(|()| n),
                )
            }
            "storage-set" => report(storage::set(&key, bytes(&a.value))),
            "storage-set-size" => {
                let size: usize = a.value.as_deref().unwrap_or("0").parse().unwrap_or(0);
                report(storage::set(&key, vec![7u8; size]))
            }
            "storage-delete" => report(storage::delete(&key)),
            "storage-list" => report(storage::list_keys(&key, None, 100)),
            // `value` keys of 256 bytes each, the longest allowed (all but
            // their last bytes alike), stopping at the first error.
            "storage-fill" => {
                let n: u32 = a.value.as_deref().unwrap_or("0").parse().unwrap_or(0);
                report((0..n).try_for_each(|i| {
                    let mut key = vec![b'f'; 252];
                    key.extend_from_slice(&i.to_be_bytes());
                    storage::set(&key, b"")
                }))
            }
            // `value` listings of up to 1000 keys in a row, stopping at the
            // first error.
            "storage-list-many" => {
                let n: u32 = a.value.as_deref().unwrap_or("0").parse().unwrap_or(0);
                report(
                    (0..n)
                        .try_for_each(|_| storage::list_keys(b"", None, 1000).map(drop))
                        .map(|()| n),
                )
            }
            "storage-usage" => report(storage::usage().map(|u| (u.bytes_used, u.keys))),
            "shared-get" => report(shared_storage::get(&key)),
            "shared-set" => report(shared_storage::set(&key, bytes(&a.value))),
            "shared-cas" => {
                let expected = a.field("expected").map(|s| s.as_bytes().to_vec());
                report(shared_storage::compare_and_swap(
                    &key,
                    expected.as_deref(),
                    Some(&bytes(&a.value)),
                ))
            }
            // `value` compare-and-swaps of a value of `size` bytes in a
            // row (the first may land; the rest find it there), stopping at
            // the first error.
            "shared-cas-many" => {
                let n: u32 = a.value.as_deref().unwrap_or("0").parse().unwrap_or(0);
                let size: usize = a.field("size").unwrap_or("0").parse().unwrap_or(0);
                let value = vec![7u8; size];
                report(
                    (0..n)
                        .try_for_each(|_| {
                            shared_storage::compare_and_swap(&key, None, Some(&value)).map(drop)
                        })
                        .map(|()| n),
                )
            }
            "shared-increment" => {
                let delta = a.value.as_deref().unwrap_or("1").parse().unwrap_or(1);
                report(shared_storage::increment(&key, delta))
            }
            "notify" => report(notify::send(a.value.as_deref().unwrap_or("hello"))),
            "ask-again-on" => report(storage::set(b"ask-again", b"1")),
            "asked-again" => report(
                storage::get(b"asked-again")
                    .map(|v| String::from_utf8_lossy(&v.unwrap_or_default()).into_owned()),
            ),
            // `n` payment sheets in one event: how many were made, or the
            // first refusal.
            "payments-many" => {
                let n: u32 = a.value.as_deref().unwrap_or("1").parse().unwrap_or(1);
                let mut made = 0;
                let mut refused = None;
                for i in 0..n {
                    let asked = payments::request(&payments::PaymentRequest {
                        amount: 100,
                        currency: "EUR".into(),
                        description: format!("sheet {i}"),
                        idempotency_key: format!("{}-{i}", a.field("prefix").unwrap_or("many")),
                        expires_in: None,
                    });
                    match asked {
                        Ok(_) => made += 1,
                        Err(e) => {
                            refused = Some(report::<()>(Err(e)));
                            break;
                        }
                    }
                }
                match refused {
                    None => format!("ok: {made}"),
                    Some(e) => format!("made {made}, then {e}"),
                }
            }
            "notify-card" => report(notify::send_with_card(
                a.value.as_deref().unwrap_or("hello"),
                AppCard::new("dev.superapp.testing.probe", "Open the probe").param("at", "card"),
            )),
            "share-card" => report(notify::share_card(AppCard::new(
                "dev.superapp.hello",
                a.field("title").unwrap_or("Hello"),
            ))),
            "payments" => report(payments::request(&payments::PaymentRequest {
                amount: a
                    .field("amount")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(500),
                currency: a.field("currency").unwrap_or("EUR").into(),
                description: a.field("description").unwrap_or("probe").into(),
                idempotency_key: a.field("idempotency-key").unwrap_or("probe-1").into(),
                expires_in: a.field("expires-in").and_then(|v| v.parse().ok()),
            })),
            "payment-status" => report(payments::status(a.value.as_deref().unwrap_or(""))),
            "refund" => {
                let amount = a.field("amount").and_then(|v| v.parse().ok()).unwrap_or(0);
                let key = a
                    .field("idempotency-key")
                    .map_or_else(|| format!("refund-{amount}"), str::to_string);
                report(payments::refund(
                    a.value.as_deref().unwrap_or(""),
                    amount,
                    &key,
                ))
            }
            "documents" => {
                let fields: Vec<String> = a
                    .field("fields")
                    .unwrap_or("policy-number")
                    .split(',')
                    .map(str::to_string)
                    .collect();
                let kind = a.field("type").unwrap_or("insurance-card");
                report(documents::request(
                    kind,
                    &fields,
                    a.field("purpose").unwrap_or("probe"),
                ))
            }
            "documents-present" => {
                let fields: Vec<String> = a
                    .field("fields")
                    .unwrap_or("policy-number")
                    .split(',')
                    .map(str::to_string)
                    .collect();
                report(documents::present(&documents::DocumentRequest {
                    credential_type: a.field("type").unwrap_or("insurance-card").into(),
                    fields,
                    purpose: a.field("purpose").unwrap_or("probe").into(),
                    audience: a.field("audience").map(Into::into),
                    nonce: a.field("nonce").map(Into::into),
                }))
            }
            "documents-held" => report(documents::held().map(|held| {
                held.into_iter()
                    .map(|h| (h.credential_type, h.issuer_name, h.fields))
                    .collect::<Vec<_>>()
            })),
            "documents-trust" => report(
                documents::trust(
                    a.field("issuer").unwrap_or(""),
                    a.field("credential").unwrap_or(""),
                )
                .map(|t| (t.issuer_name, t.revoked)),
            ),
            // The raw envelope, for a test to verify offline.
            "last-envelope" => match storage::get(b"last-envelope") {
                Ok(Some(v)) => format!("ok: {}", String::from_utf8_lossy(&v)),
                other => report(other),
            },
            "last-event" => report(
                storage::get(b"last-event")
                    .map(|v| String::from_utf8_lossy(&v.unwrap_or_default()).into_owned()),
            ),
            "http" => {
                let method = match a.field("method").unwrap_or("GET") {
                    "POST" => http::Method::Post,
                    "PUT" => http::Method::Put,
                    "DELETE" => http::Method::Delete,
                    "HEAD" => http::Method::Head,
                    _ => http::Method::Get,
                };
                let headers = a
                    .field("header")
                    .and_then(|h| h.split_once(':'))
                    .map(|(n, v)| vec![(n.trim().to_string(), v.trim().to_string())])
                    .unwrap_or_default();
                let req = http::Request {
                    method,
                    url: a.value.clone().unwrap_or_default(),
                    headers,
                    body: a.field("body").map(|b| b.as_bytes().to_vec()),
                    timeout_ms: a.field("timeout-ms").and_then(|t| t.parse().ok()),
                };
                report(
                    http::fetch(&req)
                        .map(|r| format!("{} {}", r.status, String::from_utf8_lossy(&r.body))),
                )
            }
            // `value` fetches of distinct paths in a row (whatever each
            // answers), until the host refuses one as over a quota.
            "http-many" => {
                let n: u32 = a.value.as_deref().unwrap_or("0").parse().unwrap_or(0);
                let over = (0..n).find(|i| {
                    let req = http::Request {
                        method: http::Method::Get,
                        url: format!("https://backend.probe.test/item/{i}"),
                        headers: Vec::new(),
                        body: None,
                        timeout_ms: None,
                    };
                    matches!(http::fetch(&req), Err(Error::QuotaExceeded(_)))
                });
                match over {
                    Some(i) => format!("{i} then quota-exceeded"),
                    None => format!("{n} made"),
                }
            }
            "http-origins" => report(http::origins().map(|o| o.join(" "))),
            "clock" => format!("ok: {}", clock::unix_seconds()),
            "random" => format!("ok: {}", random::bytes(64).len()),
            other => return Err(AppError::BadRequest(format!("unknown probe `{other}`"))),
        };
        Ok(View::new("probe").text(out))
    }
}

superapp_sdk::export_app!(Probe);
