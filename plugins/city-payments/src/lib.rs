//! City Utilities: a citizen's electricity, water, internet and waste
//! bills, created for their pseudonymous id on first launch. They pay one
//! bill or several at once through `payments`, keep receipts, and see
//! each bill's history: due, overdue, paid, or refunded by the company
//! (refunds are made from the company's back office, and show up here the
//! next time the app opens).

mod account;
mod bills;

use superapp_sdk::prelude::*;
use superapp_sdk::{PaymentOutcome, PaymentResult};

use account::{Account, Pending, Receipt, Standing};

const CURRENCY: &str = "EUR";
/// Most bills one payment may cover.
const MAX_BILLS_PER_PAYMENT: usize = 10;

struct CityPayments;

impl App for CityPayments {
    fn launch(_ctx: &Context) -> Result<View, AppError> {
        let customer = identity::user_id()?;
        let account = catch_up(&customer, account::open(&customer, today())?)?;
        Ok(home(&customer, &account, None))
    }

    fn event(_ctx: &Context, event: Event) -> Result<View, AppError> {
        let customer = identity::user_id()?;
        let account = account::open(&customer, today())?;
        match event {
            Event::Action(a) => match a.name.as_str() {
                "home" => Ok(home(&customer, &catch_up(&customer, account)?, None)),
                "pay" => pay(
                    &customer,
                    &account,
                    vec![a.value.clone().unwrap_or_default()],
                ),
                "pay-selected" => {
                    let chosen = a
                        .fields
                        .iter()
                        .filter(|(_, v)| matches!(v.as_str(), "true" | "on" | "1" | "yes"))
                        .map(|(k, _)| k.clone())
                        .collect();
                    pay(&customer, &account, chosen)
                }
                "receipts" => Ok(receipts(&sync_refunds(&customer, account)?)),
                "receipt" => {
                    let account = sync_refunds(&customer, account)?;
                    let order = a.value.as_deref().unwrap_or_default();
                    Ok(match account.receipt(order) {
                        Some(r) => receipt(&account, r, None),
                        None => home(&customer, &account, Some("No such receipt.")),
                    })
                }
                "history" => Ok(history(&sync_refunds(&customer, account)?)),
                other => Err(AppError::BadRequest(format!("unknown action `{other}`"))),
            },
            Event::Payment(result) => settled(&customer, result),
            other => Err(AppError::unexpected(&other)),
        }
    }
}

superapp_sdk::export_app!(CityPayments);

fn today() -> i64 {
    (clock::unix_seconds() / 86_400) as i64
}

fn money(minor: u64) -> String {
    format!("{CURRENCY} {}.{:02}", minor / 100, minor % 100)
}

fn standing_badge(standing: Standing, due: i64, today: i64) -> Element {
    match standing {
        Standing::Paid => Element::Badge("Paid".into(), Tone::Success),
        Standing::PartlyRefunded => Element::Badge("Partly refunded".into(), Tone::Info),
        Standing::Refunded => Element::Badge("Refunded".into(), Tone::Info),
        Standing::Overdue => Element::Badge("Overdue".into(), Tone::Danger),
        Standing::Due if due - today <= 7 => {
            Element::Badge(format!("Due in {} days", due - today), Tone::Warning)
        }
        Standing::Due => Element::Badge("Due".into(), Tone::Neutral),
    }
}

fn home(customer: &str, account: &Account, note: Option<&str>) -> View {
    let today = today();
    let mut view = View::new("City Utilities").heading("Your bills");
    if let Some(note) = note {
        view = view.styled(note, TextStyle::Emphasis);
    }
    let customer_no: String = customer.chars().take(8).collect();
    view = view.styled(
        format!("Customer {}", customer_no.to_uppercase()),
        TextStyle::Muted,
    );
    let open: Vec<_> = account.open_bills().collect();
    if open.is_empty() {
        view = view.text("Everything is paid. Thank you!");
    } else {
        for bill in &open {
            view = view.push(Element::Row(vec![
                Element::Column(vec![
                    Element::Text(
                        format!("{} · {}", bill.service, bill.period),
                        TextStyle::Emphasis,
                    ),
                    Element::Text(
                        format!(
                            "{} · due {}",
                            money(bill.amount),
                            clock::format_date(bill.due)
                        ),
                        TextStyle::Body,
                    ),
                ]),
                standing_badge(account.standing(bill, today), bill.due, today),
                Element::Button(
                    Button::new(format!("Pay {}", money(bill.amount)), "pay").value(&bill.id),
                ),
            ]));
        }
        let mut form = Form::new("pay-selected", "Pay selected bills");
        for bill in &open {
            form = form.input(Input::new(
                InputKind::Checkbox,
                &bill.id,
                format!("{} {} — {}", bill.service, bill.period, money(bill.amount)),
            ));
        }
        view = view
            .subheading("Pay several at once")
            .form(form.note("One payment, one receipt for all of them."));
    }
    view.divider()
        .button(Button::new("Receipts", "receipts").style(ButtonStyle::Secondary))
        .button(Button::new("History", "history").style(ButtonStyle::Secondary))
}

/// Start one payment for the open bills `chosen`.
fn pay(customer: &str, account: &Account, mut chosen: Vec<String>) -> Result<View, AppError> {
    chosen.sort();
    chosen.dedup();
    if chosen.is_empty() {
        return Ok(home(
            customer,
            account,
            Some("Choose at least one bill to pay."),
        ));
    }
    if chosen.len() > MAX_BILLS_PER_PAYMENT {
        return Ok(home(
            customer,
            account,
            Some("Pay at most ten bills at once."),
        ));
    }
    let mut bills = Vec::new();
    for id in &chosen {
        match account.bill(id) {
            Some(b) if b.paid_by.is_none() => bills.push(b.clone()),
            Some(_) => return Ok(home(customer, account, Some("That bill is already paid."))),
            None => return Ok(home(customer, account, Some("No such bill."))),
        }
    }
    let amount: u64 = bills.iter().map(|b| b.amount).sum();
    let description = match bills.as_slice() {
        [one] => format!("{} {}", one.service, one.period),
        many => format!(
            "{} bills: {}",
            many.len(),
            many.iter()
                .map(|b| b.service.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let request = payments::PaymentRequest {
        amount,
        currency: CURRENCY.into(),
        description: description.chars().take(200).collect(),
        // The same bills again (a double tap, a retry) find the same order,
        // until one ends unpaid: then the next try is a new order.
        idempotency_key: {
            let set = chosen.join("+");
            let tries = account.unpaid_attempts.get(&set).copied().unwrap_or(0);
            let key = format!("bills:{set}");
            // Within the host's 128 bytes, the attempt number kept.
            format!("{}#{tries}", key.chars().take(116).collect::<String>())
        },
        expires_in: None,
    };
    let order = match payments::request(&request) {
        Ok(order) => order,
        Err(e) => {
            return Ok(home(
                customer,
                account,
                Some(&format!("The payment could not start: {e:?}")),
            ))
        }
    };
    account::update(customer, |a| {
        if !a.pending.iter().any(|p| p.order == order) {
            a.pending.push(Pending {
                order: order.clone(),
                bills: chosen.clone(),
                amount,
            });
        }
        Ok(())
    })?;
    // The key found an order that already ended, whose outcome this app
    // never heard (its event was lost): settle it now, as the event would
    // have, rather than ask the user to confirm a sheet that is gone.
    if let Some(outcome) = ended(&order) {
        return settled(
            customer,
            PaymentResult {
                order_id: order,
                outcome,
            },
        );
    }
    Ok(View::new("Confirm the payment")
        .heading("Confirm the payment")
        .text(format!(
            "Confirm {} to City Utilities in the payment dialog.",
            money(amount)
        ))
        .styled(
            "The dialog is drawn by the super-app, not by City Utilities.",
            TextStyle::Muted,
        ))
}

/// A payment settled: mark its bills paid and keep the receipt, or forget
/// the order.
fn settled(customer: &str, result: PaymentResult) -> Result<View, AppError> {
    let order = result.order_id;
    let paid = matches!(result.outcome, PaymentOutcome::Paid);
    let now = clock::unix_seconds();
    let (account, outcome) = account::update(customer, |a| {
        let Some(index) = a.pending.iter().position(|p| p.order == order) else {
            return Ok(None);
        };
        let pending = a.pending.remove(index);
        if !paid {
            *a.unpaid_attempts
                .entry(pending.bills.join("+"))
                .or_default() += 1;
            return Ok(Some((pending, 0)));
        }
        // A bill another payment settled meanwhile is refunded from this one.
        let mut twice = 0;
        for bill in a.bills.iter_mut().filter(|b| pending.bills.contains(&b.id)) {
            match &bill.paid_by {
                None => bill.paid_by = Some(order.clone()),
                Some(other) if *other != order => twice += bill.amount,
                Some(_) => {}
            }
        }
        a.receipts.push(Receipt {
            order: order.clone(),
            bills: pending.bills.clone(),
            amount: pending.amount,
            paid_at: now,
            refunded: 0,
            returned: twice,
        });
        Ok(Some((pending, twice)))
    })?;
    let Some((_, twice)) = outcome else {
        log::warn("a payment result for an order this app does not know");
        return Ok(home(customer, &account, None));
    };
    if !paid {
        let why = match result.outcome {
            PaymentOutcome::Declined => "You declined the payment; nothing was paid.",
            PaymentOutcome::Expired => "The payment was not confirmed in time; nothing was paid.",
            _ => "The payment failed; nothing was paid.",
        };
        return Ok(home(customer, &account, Some(why)));
    }
    if twice > 0 {
        payments::refund(&order, twice, &format!("paid-twice-{order}"))?;
    }
    let account = sync_refunds(customer, account)?;
    let receipt_for = account.receipt(&order).cloned();
    Ok(match receipt_for {
        Some(r) => receipt(&account, &r, Some("Paid. Thank you!")),
        None => home(customer, &account, None),
    })
}

/// How `order` ended, if it did (a refunded order was paid first).
fn ended(order: &str) -> Option<PaymentOutcome> {
    match payments::status(order) {
        Ok(payments::OrderStatus::Settled(outcome)) => Some(outcome),
        Ok(payments::OrderStatus::Refunded(_)) => Some(PaymentOutcome::Paid),
        _ => None,
    }
}

/// Settle the pending orders that ended without this app hearing (the host
/// delivers a payment event once, and it can be lost), then bring in
/// refunds.
fn catch_up(customer: &str, account: Account) -> Result<Account, AppError> {
    let mut caught = false;
    for p in &account.pending {
        if let Some(outcome) = ended(&p.order) {
            settled(
                customer,
                PaymentResult {
                    order_id: p.order.clone(),
                    outcome,
                },
            )?;
            caught = true;
        }
    }
    let account = if caught {
        account::open(customer, today())?
    } else {
        account
    };
    sync_refunds(customer, account)
}

/// Bring in refunds the company made since the app last looked, and send
/// again a double payment's refund that did not go through when it was
/// settled (same key, so it goes once).
fn sync_refunds(customer: &str, account: Account) -> Result<Account, AppError> {
    let mut refunds = Vec::new();
    for r in account.receipts.iter().filter(|r| r.refunded < r.amount) {
        if r.returned > r.refunded {
            let key = format!("paid-twice-{}", r.order);
            if let Err(e) = payments::refund(&r.order, r.returned, &key) {
                log::warn(&format!("a double payment's refund failed again: {e:?}"));
            }
        }
        if let payments::OrderStatus::Refunded(total) = payments::status(&r.order)? {
            if total != r.refunded {
                refunds.push((r.order.clone(), total));
            }
        }
    }
    if refunds.is_empty() {
        return Ok(account);
    }
    let (account, ()) = account::update(customer, |a| {
        for (order, total) in &refunds {
            if let Some(r) = a.receipts.iter_mut().find(|r| r.order == *order) {
                r.refunded = r.refunded.max(*total);
            }
        }
        Ok(())
    })?;
    Ok(account)
}

fn receipt(account: &Account, r: &Receipt, note: Option<&str>) -> View {
    let mut pairs = vec![
        ("Receipt".to_string(), r.order.clone()),
        ("Paid to".to_string(), "City Utilities".to_string()),
        (
            "Paid at".to_string(),
            format!("{} UTC", clock::format_date((r.paid_at / 86_400) as i64)),
        ),
    ];
    for id in &r.bills {
        if let Some(b) = account.bill(id) {
            pairs.push((format!("{} {}", b.service, b.period), money(b.amount)));
        }
    }
    pairs.push(("Total".to_string(), money(r.amount)));
    if r.refunded > 0 {
        pairs.push(("Refunded".to_string(), money(r.refunded)));
    }
    let mut view = View::new("Receipt").heading("Receipt");
    if let Some(note) = note {
        view = view.styled(note, TextStyle::Emphasis);
    }
    if r.refunded > r.returned {
        view = view
            .push(Element::Badge("Refunded".into(), Tone::Info))
            .text(format!(
                "City Utilities refunded {} of this payment to your wallet.",
                money(r.refunded - r.returned)
            ));
    } else {
        view = view.push(Element::Badge("Paid".into(), Tone::Success));
    }
    if r.returned > 0 {
        view = view.text(format!(
            "{} went back to your wallet at once: some of these bills had been paid by another payment.",
            money(r.returned)
        ));
    }
    view.details(pairs)
        .divider()
        .button(Button::new("All receipts", "receipts").style(ButtonStyle::Secondary))
        .button(Button::new("Bills", "home").style(ButtonStyle::Secondary))
}

fn receipts(account: &Account) -> View {
    let mut view = View::new("Receipts").heading("Receipts");
    if account.receipts.is_empty() {
        view = view.styled("No payments yet.", TextStyle::Muted);
    }
    for r in account.receipts.iter().rev() {
        let label = format!(
            "{} · {}",
            clock::format_date((r.paid_at / 86_400) as i64),
            money(r.amount)
        );
        // Money given back at once for bills already paid is not a refund
        // of this payment by the company.
        let badge = if r.refunded > r.returned {
            Element::Badge(
                format!("Refunded {}", money(r.refunded - r.returned)),
                Tone::Info,
            )
        } else {
            Element::Badge("Paid".into(), Tone::Success)
        };
        view = view.push(Element::Row(vec![
            Element::Text(label, TextStyle::Body),
            badge,
            Element::Button(
                Button::new("Open", "receipt")
                    .value(&r.order)
                    .style(ButtonStyle::Secondary),
            ),
        ]));
    }
    view.divider()
        .button(Button::new("Bills", "home").style(ButtonStyle::Secondary))
}

fn history(account: &Account) -> View {
    let today = today();
    let mut view = View::new("History").heading("History");
    let mut bills: Vec<_> = account.bills.iter().collect();
    bills.sort_by_key(|b| std::cmp::Reverse(b.due));
    for b in bills {
        view = view.push(Element::Row(vec![
            Element::Text(
                format!(
                    "{} · {} · {} · due {}",
                    b.service,
                    b.period,
                    money(b.amount),
                    clock::format_date(b.due)
                ),
                TextStyle::Body,
            ),
            standing_badge(account.standing(b, today), b.due, today),
        ]));
    }
    view.divider()
        .button(Button::new("Bills", "home").style(ButtonStyle::Secondary))
}
