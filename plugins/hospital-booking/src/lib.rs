//! City Hospital: patients book an appointment (department → doctor → time
//! → confirm), pay the consultation fee, optionally share their
//! health-insurance policy to pay only the co-payment, get a confirmation
//! in their chats, see their place in today's queue, and cancel with a
//! refund by a stated rule.
//!
//! The schedule lives in shared storage ([`catalog`], `slots`), or, built
//! with the `backend` feature, in the hospital's own booking system
//! (`backend`); each patient's appointments in their own storage
//! ([`appointments`]). Every event runs in a fresh instance, so nothing is
//! kept in memory.

mod appointments;
#[cfg(feature = "backend")]
mod backend;
mod calendar;
mod catalog;
mod screens;
#[cfg(not(feature = "backend"))]
mod slots;
mod store;

// The backend build keeps the schedule and the slots in the hospital's own
// system, behind the same functions.
#[cfg(feature = "backend")]
use backend as slots;

use hospital_schedule::{MAX_UPCOMING, POLICY_FIELDS, POLICY_TYPE};
use superapp_sdk::prelude::*;
use superapp_sdk::{ConsentAnswer, DocumentOutcome, PaymentOutcome, PaymentResult};

use appointments::{Appointment, State};
use catalog::{Catalog, Local as _, WINDOW_DAYS};

struct Hospital;

impl App for Hospital {
    fn launch(ctx: &Context) -> Result<View, AppError> {
        not_answering(opened(ctx))
    }

    fn event(ctx: &Context, event: Event) -> Result<View, AppError> {
        // What the patient pressed: a system that does not answer is a
        // screen that says so. A host event (a payment's, a document's or
        // a permission's answer) still fails as such, so the host records
        // it and the app finds what happened on the next screen.
        match event {
            Event::Action(_) => not_answering(acted(ctx, event)),
            other => acted(ctx, other),
        }
    }
}

/// The hospital's system did not answer (or answered with a server
/// error): the patient sees that, in words, not the capability's error
/// (nor the transport's). What they asked may have reached it before the
/// answer was lost, so they are sent to look rather than told nothing
/// changed.
fn not_answering(result: Result<View, AppError>) -> Result<View, AppError> {
    match result {
        Err(AppError::Capability(Error::Unavailable(_))) => Ok(screens::problem(
            "The hospital is not answering",
            "City Hospital's booking system is not answering right now. What you asked may not have gone through: look under My appointments before you try again in a minute.",
        )),
        other => other,
    }
}

fn opened(ctx: &Context) -> Result<View, AppError> {
    let catalog = match loaded()? {
        Ok(c) => c,
        Err(view) => return Ok(view),
    };
    // App cards and links open an appointment or a department directly.
    if let Some(id) = ctx.param("appointment") {
        return show_appointment(&catalog, id, None);
    }
    if let Some(id) = ctx.param("department") {
        return department(&catalog, id);
    }
    home(&catalog)
}

fn acted(_ctx: &Context, event: Event) -> Result<View, AppError> {
    let catalog = match loaded()? {
        Ok(c) => c,
        Err(view) => return Ok(view),
    };
    match event {
        Event::Action(a) => {
            let value = a.value.as_deref().unwrap_or_default();
            match a.name.as_str() {
                "home" => home(&catalog),
                "department" => department(&catalog, value),
                "doctor" => doctor(&catalog, value, None, None),
                "day" => {
                    let day = a.field("date").and_then(calendar::parse_iso);
                    doctor(&catalog, a.field("doctor").unwrap_or_default(), day, None)
                }
                "take" => take(&catalog, value),
                "insurance" => ask_for_policy(&catalog, value),
                "pay" => pay(&catalog, value),
                "release" => release(&catalog, value),
                "mine" => mine(&catalog),
                "appointment" => show_appointment(&catalog, value, None),
                "cancel" => Ok(match booked_upcoming(&catalog, value)? {
                    Ok(a) => screens::cancel(&catalog, &a, &catalog.now()),
                    Err(view) => view,
                }),
                "cancel-confirm" => cancel(&catalog, value),
                "about" => about(&catalog),
                other => Err(AppError::BadRequest(format!("unknown action `{other}`"))),
            }
        }
        Event::Payment(result) => payment(&catalog, result),
        Event::Document(outcome) => policy_answer(&catalog, outcome),
        Event::Consent(answer) => consent(&catalog, answer),
        other => Err(AppError::unexpected(&other)),
    }
}

superapp_sdk::export_app!(Hospital);

/// Who holds a slot in shared storage: the patient's pseudonym. The
/// backend build needs none (and does not import `identity`): the hospital's
/// system knows the patient from the host's signed assertion.
fn patient() -> Result<String, AppError> {
    #[cfg(not(feature = "backend"))]
    return Ok(identity::user_id()?);
    #[cfg(feature = "backend")]
    Ok(String::new())
}

/// The schedule, or the screen that says why it cannot be had: in the
/// backend build the first request asks the patient (in a dialog the host
/// draws) to let the app contact the hospital's booking system.
fn loaded() -> Result<Result<Catalog, View>, AppError> {
    match catalog::load() {
        Ok(c) => Ok(Ok(c)),
        Err(AppError::Capability(Error::ConsentRequired(_))) => Ok(Err(screens::waiting(
            "Allow City Hospital",
            "City Hospital keeps its schedule in its own booking system. Allow the app to contact it in the dialog.",
        ))),
        Err(AppError::Capability(Error::Denied(why))) => Ok(Err(screens::problem(
            "Cannot reach the hospital",
            &format!("Booking needs the hospital's own system, and {why}."),
        ))),
        Err(e) => Err(e),
    }
}

fn home(catalog: &Catalog) -> Result<View, AppError> {
    let now = catalog.now();
    let mut today = None;
    for a in appointments::all()? {
        if let Some((place, wait)) = appointments::queue(catalog, &a, &now)? {
            today = Some((a, place, wait));
            break;
        }
    }
    Ok(screens::home(
        catalog,
        today.as_ref().map(|(a, p, w)| (a, *p, *w)),
    ))
}

fn department(catalog: &Catalog, id: &str) -> Result<View, AppError> {
    let Some(dept) = catalog.department(id) else {
        return Ok(screens::problem(
            "Not found",
            "This department does not exist.",
        ));
    };
    let now = catalog.now();
    let mut doctors = Vec::new();
    for d in catalog.doctors_in(&dept.id) {
        let next = slots::next_free(catalog, d, &now)?
            .map(|(day, at)| (day, at, now.unix_of(day, at).saturating_sub(now.unix)));
        doctors.push(screens::DoctorSummary { doctor: d, next });
    }
    Ok(screens::department(catalog, &dept.name, &doctors))
}

/// A doctor's free times on `day` (by default the day of their next free slot).
fn doctor(
    catalog: &Catalog,
    id: &str,
    day: Option<calendar::Day>,
    note: Option<&str>,
) -> Result<View, AppError> {
    let Some(d) = catalog.doctor(id) else {
        return Ok(screens::problem(
            "Not found",
            "This doctor does not work here.",
        ));
    };
    let now = catalog.now();
    let day = match day {
        Some(day) => day,
        None => slots::next_free(catalog, d, &now)?.map_or(now.day, |(day, _)| day),
    };
    if day < now.day || day >= now.day + WINDOW_DAYS {
        return Ok(screens::problem(
            "Pick another day",
            &format!("Appointments can be booked from today up to {WINDOW_DAYS} days ahead."),
        ));
    }
    let offered: Vec<_> = catalog::day_slots(catalog, day)?
        .remove(&d.id)
        .unwrap_or_default()
        .into_iter()
        .filter(|&m| day > now.day || m > now.minutes)
        .collect();
    let free = slots::free(&d.id, day, &offered, now.unix)?;
    Ok(screens::doctor(catalog, d, &now, day, &free, note))
}

/// Hold a slot for this patient: the compare-and-swap that makes sure no
/// two patients get one time.
fn take(catalog: &Catalog, value: &str) -> Result<View, AppError> {
    let mut parts = value.splitn(3, '/');
    let (Some(doctor_id), Some(date), Some(time)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(AppError::BadRequest(
            "a slot is doctor/YYYY-MM-DD/HHMM".into(),
        ));
    };
    let (Some(d), Some(day), Some(at)) = (
        catalog.doctor(doctor_id),
        calendar::parse_iso(date),
        calendar::parse_time(time),
    ) else {
        return Err(AppError::BadRequest(format!("no such slot `{value}`")));
    };
    let now = catalog.now();
    let offered = catalog::day_slots(catalog, day)?
        .remove(&d.id)
        .unwrap_or_default();
    let ahead = day > now.day || (day == now.day && at > now.minutes);
    if !offered.contains(&at) || !ahead {
        return doctor(
            catalog,
            &d.id,
            Some(day).filter(|&x| x >= now.day),
            Some("That time is not offered. Pick one of these."),
        );
    }
    let mine = appointments::all()?;
    let upcoming = mine
        .iter()
        .filter(|a| a.state == State::Booked && a.upcoming(&now))
        .count();
    if upcoming >= MAX_UPCOMING {
        return Ok(screens::problem(
            "Too many appointments",
            &format!("You have {MAX_UPCOMING} upcoming appointments. Cancel one to book another."),
        ));
    }
    // One hold at a time: picking a new time gives up the previous one.
    for old in mine.into_iter().filter(|a| a.state == State::Held) {
        release_quietly(catalog, old, "You picked another time.");
    }
    let me = patient()?;
    let id = appointments::new_reference();
    let key = slots::key(&d.id, day, at);
    match slots::take(&key, &me, &id, now.unix)? {
        slots::Take::Held { until } => {
            let a = Appointment {
                id,
                doctor: d.id.clone(),
                day,
                at,
                starts: now.unix_of(day, at),
                fee: d.fee,
                insurance: None,
                state: State::Held,
                order: None,
                hold_until: until,
                paid: None,
            };
            appointments::save(&a)?;
            Ok(screens::confirm(catalog, &a, &now, None))
        }
        slots::Take::JustTaken => doctor(
            catalog,
            &d.id,
            Some(day),
            Some("That time was just taken by another patient. Pick another one."),
        ),
    }
}

/// The patient's appointment `id` while its slot is still held for them.
fn held(catalog: &Catalog, id: &str) -> Result<Result<Appointment, View>, AppError> {
    let now = catalog.now();
    match appointments::get(id)? {
        Some(a) if a.state == State::Held && a.hold_until > now.unix => Ok(Ok(a)),
        Some(a) if a.state == State::Held => {
            if !release_quietly(catalog, a.clone(), "Not paid within 10 minutes.") {
                return show_appointment(catalog, &a.id, None).map(Err);
            }
            Ok(Err(screens::problem(
                "Hold ran out",
                "This time was held for 10 minutes and is free again. Please pick a time again.",
            )))
        }
        Some(a) => show_appointment(catalog, &a.id, None).map(Err),
        None => Ok(Err(screens::problem("Not found", "No such appointment."))),
    }
}

/// Give up a held time, unless its payment went through after all (its
/// payment event can be lost after the money moved, e.g. when the event ran
/// out of time): then finish it as that event would have, booked or
/// refunded. Whether the time was given up.
fn release_quietly(catalog: &Catalog, mut a: Appointment, reason: &str) -> bool {
    if let Some((order, amount)) = paid_sheet(&a) {
        let _ = finish_paid(catalog, a, &order, Some(amount));
        return false;
    }
    if slots::release(&a.slot_key(), &a.id).is_ok() {
        a.state = State::Released {
            reason: reason.into(),
        };
        let _ = appointments::save(&a);
    }
    true
}

/// A sheet of held appointment `a` that was paid (an older one too; one
/// refunded in part, the difference of a lowered fee, was paid all the
/// same), with its amount.
fn paid_sheet(a: &Appointment) -> Option<(String, u64)> {
    appointments::orders_of(&a.id)
        .unwrap_or_default()
        .into_iter()
        .find(|(order, amount)| match payments::status(order) {
            Ok(payments::OrderStatus::Settled(PaymentOutcome::Paid)) => true,
            Ok(payments::OrderStatus::Refunded(back)) => back < *amount,
            _ => false,
        })
}

/// A held appointment one of whose sheets was paid though the app never
/// heard (its payment event was lost, in a crash of the host right after
/// the confirmation): finished as that event would have, booked or
/// refunded, before the patient is shown it. The note to show.
fn settle_held(catalog: &Catalog, a: &Appointment) -> Result<Option<&'static str>, AppError> {
    if a.state != State::Held {
        return Ok(None);
    }
    match paid_sheet(a) {
        Some((order, amount)) => finish_paid(catalog, a.clone(), &order, Some(amount)),
        None => Ok(None),
    }
}

fn ask_for_policy(catalog: &Catalog, id: &str) -> Result<View, AppError> {
    let a = match held(catalog, id)? {
        Ok(a) => a,
        Err(view) => return Ok(view),
    };
    let fields: Vec<String> = POLICY_FIELDS.iter().map(|f| f.to_string()).collect();
    match documents::request(
        POLICY_TYPE,
        &fields,
        "To charge you the co-payment instead of the full consultation fee",
    ) {
        Ok(request) => {
            appointments::link_request(&request, &a.id)?;
            store::set("pending/document", &a.id)?;
            #[cfg(feature = "backend")]
            slots::expect_policy(&a.id, &request)?;
            Ok(screens::waiting(
                "Share your policy",
                "Choose what to share in the dialog. The hospital sees only the fields you allow.",
            ))
        }
        Err(e) => Ok(screens::confirm(
            catalog,
            &a,
            &catalog.now(),
            Some(&format!(
                "The policy cannot be asked for now ({}). The full fee applies.",
                describe(&e)
            )),
        )),
    }
}

fn policy_answer(catalog: &Catalog, outcome: DocumentOutcome) -> Result<View, AppError> {
    let now = catalog.now();
    let (a, note) = match outcome {
        DocumentOutcome::Shared(p) => {
            let Some(mut a) = appointments::of_request(&p.request_id)? else {
                return home(catalog);
            };
            let note = match checked_policy(catalog, &a, &p)? {
                // Paid (or given up) already: the fee stays what it was.
                Ok(_) if a.state != State::Held => {
                    "This appointment is no longer waiting for its payment; its fee stays as it was."
                        .to_string()
                }
                Ok((insurance, fee)) => {
                    a.fee = fee;
                    let note = format!(
                        "Insured with {}: you pay the co-payment.",
                        insurance.insurer
                    );
                    a.insurance = Some(insurance);
                    appointments::save(&a)?;
                    note
                }
                Err(why) => format!("The policy cannot be used: {why}. The full fee applies."),
            };
            (a, note)
        }
        DocumentOutcome::Declined(_) => {
            let Some(id) = store::get::<String>("pending/document")? else {
                return home(catalog);
            };
            let Some(a) = appointments::get(&id)? else {
                return home(catalog);
            };
            (
                a,
                "You did not share a policy: the full fee applies.".to_string(),
            )
        }
    };
    if a.state != State::Held {
        return show_appointment(catalog, &a.id, Some(&note));
    }
    Ok(screens::confirm(catalog, &a, &now, Some(&note)))
}

/// The policy the patient shared and the fee it brings, or why it cannot
/// be used. In the backend build the host handed it straight to the
/// hospital's system, which checked it: this app has only its answer.
fn checked_policy(
    catalog: &Catalog,
    a: &Appointment,
    p: &superapp_sdk::Presentation,
) -> Result<Result<(appointments::Insurance, u64), String>, AppError> {
    #[cfg(feature = "backend")]
    {
        let _ = (catalog, p);
        slots::policy_outcome(&a.id)
    }
    #[cfg(not(feature = "backend"))]
    {
        Ok(appointments::policy(&p.claims, a.day).map(|insurance| {
            let fee = catalog.doctor(&a.doctor).map_or(a.fee, |d| d.co_payment);
            (insurance, fee)
        }))
    }
}

fn pay(catalog: &Catalog, id: &str) -> Result<View, AppError> {
    let mut a = match held(catalog, id)? {
        Ok(a) => a,
        Err(view) => return Ok(view),
    };
    let now = catalog.now();
    // The hospital's system decides what the time costs.
    #[cfg(feature = "backend")]
    {
        a.fee = slots::fee(&a.id)?;
    }
    let left = a.hold_until.saturating_sub(now.unix);
    if left < 60 {
        return Ok(screens::problem(
            "Hold about to run out",
            "Less than a minute is left to pay. Please pick the time again.",
        ));
    }
    let doctor = catalog
        .doctor(&a.doctor)
        .map_or(a.doctor.clone(), |d| d.name.clone());
    let request = payments::PaymentRequest {
        amount: a.fee,
        currency: catalog.currency.clone(),
        description: format!(
            "Consultation {} · {} {} · {}",
            doctor,
            calendar::iso(a.day),
            calendar::hhmm(a.at),
            a.id
        ),
        // One order per appointment and amount: a retried tap finds it.
        idempotency_key: format!("{}-{}", a.id, a.fee),
        // The order expires with the hold, so a late payment is refused.
        expires_in: Some(left as u32),
    };
    match payments::request(&request) {
        Ok(order) => {
            appointments::link_order(&order, &a.id, a.fee)?;
            a.order = Some(order);
            appointments::save(&a)?;
            Ok(screens::waiting(
                "Confirm the payment",
                &format!(
                    "Confirm {} to City Hospital in the payment dialog.",
                    catalog.money(a.fee)
                ),
            ))
        }
        Err(e) => Ok(screens::confirm(
            catalog,
            &a,
            &now,
            Some(&format!("The payment could not start: {}.", describe(&e))),
        )),
    }
}

fn release(catalog: &Catalog, id: &str) -> Result<View, AppError> {
    if let Some(a) = appointments::get(id)? {
        if a.state == State::Held {
            let (doctor, id) = (a.doctor.clone(), a.id.clone());
            if !release_quietly(catalog, a, "You picked another time.") {
                return show_appointment(catalog, &id, None);
            }
            return self::doctor(catalog, &doctor, None, None);
        }
    }
    home(catalog)
}

/// The outcome of a payment: book the held slot, or free it.
fn payment(catalog: &Catalog, result: PaymentResult) -> Result<View, AppError> {
    let Some((a, amount)) = appointments::of_order(&result.order_id)? else {
        log::warn("a payment result for an order this app does not know");
        return home(catalog);
    };
    let order = result.order_id;
    match result.outcome {
        PaymentOutcome::Paid => {
            let note = finish_paid(catalog, a.clone(), &order, Some(amount))?;
            show_appointment(catalog, &a.id, note)
        }
        outcome => {
            let reason = match outcome {
                PaymentOutcome::Declined => "You declined the payment.".to_string(),
                PaymentOutcome::Expired => "The payment was not confirmed in time.".to_string(),
                PaymentOutcome::Failed(why) => format!("The payment failed: {why}."),
                PaymentOutcome::Paid => unreachable!("handled above"),
            };
            if a.state == State::Held && a.order.as_deref() == Some(order.as_str()) {
                release_quietly(
                    catalog,
                    a.clone(),
                    &format!("{reason} The time is free again."),
                );
            }
            Ok(screens::problem(
                "Not booked",
                &format!("{reason} The time was freed for other patients."),
            ))
        }
    }
}

/// Order `order` of appointment `a` was paid (`amount`, or what was
/// linked to it): book the held time, or refund if it is gone or was paid
/// twice. The note the appointment's screen shows.
fn finish_paid(
    catalog: &Catalog,
    mut a: Appointment,
    order: &str,
    amount: Option<u64>,
) -> Result<Option<&'static str>, AppError> {
    let amount = match amount {
        Some(amount) => amount,
        None => appointments::of_order(order)?.map_or(a.fee, |(_, amount)| amount),
    };
    let now = catalog.now();
    if a.state == State::Booked && a.order.as_deref() != Some(order) {
        // A second sheet for the same appointment was paid too.
        payments::refund(order, amount, &format!("duplicate-{order}"))?;
        return Ok(Some("You paid twice; the second payment was refunded."));
    }
    if a.state == State::Booked {
        return Ok(None);
    }
    if a.state != State::Held {
        // A hold given up keeps the order of the sheet it had open, which
        // was not paid then (a paid one is finished instead of given up):
        // paid now, it books nothing and goes back whole, like any other.
        let released = matches!(a.state, State::Released { .. });
        if a.order.as_deref() == Some(order) && !released {
            // This payment was dealt with already (booked and cancelled by
            // the rule, or refunded as lost).
            return Ok(None);
        }
        // Cancelled or given up before this sheet was confirmed: it books
        // nothing, and goes back whole (once, by its key).
        payments::refund(order, amount, &format!("not-held-{order}"))?;
        return Ok(Some(
            "This time was no longer held for you when the payment came, so it was refunded.",
        ));
    }
    let me = patient()?;
    if slots::book(&a.slot_key(), &me, &a.id, order, now.unix)? {
        // A sheet made before the fee went down (the patient shared their
        // policy meanwhile) was paid: the difference goes back at once, so
        // the booking costs the fee shown and cancelling refunds by it.
        let over = amount.saturating_sub(a.fee);
        if over > 0 {
            payments::refund(order, over, &format!("over-{order}"))?;
        }
        a.state = State::Booked;
        a.order = Some(order.to_string());
        a.paid = Some(amount - over);
        appointments::save(&a)?;
        confirm_in_chat(catalog, &a)?;
        Ok(Some(if over > 0 {
            "Paid and booked. The fee went down after that payment was asked for; the difference was refunded."
        } else {
            "Paid and booked. See you then!"
        }))
    } else {
        payments::refund(order, amount, &format!("slot-lost-{order}"))?;
        if slots::booked_for(&a.slot_key(), &a.id)? {
            // Another sheet of this appointment, confirmed at the same
            // moment, booked it: this one was paid twice.
            return Ok(Some("You paid twice; the second payment was refunded."));
        }
        a.state = State::Lost;
        a.order = Some(order.to_string());
        appointments::save(&a)?;
        Ok(None)
    }
}

/// A confirmation in the patient's chats, with a card that opens the
/// appointment. The first time, the super-app asks the patient whether
/// the hospital may write to them; the message is sent once they agree.
fn confirm_in_chat(catalog: &Catalog, a: &Appointment) -> Result<(), AppError> {
    let doctor = catalog
        .doctor(&a.doctor)
        .map_or(a.doctor.as_str(), |d| d.name.as_str());
    let text = format!(
        "Your appointment with {doctor} on {} at {} is booked (reference {}).",
        calendar::short(a.day),
        calendar::hhmm(a.at),
        a.id
    );
    let card = AppCard::new("dev.superapp.hospital-booking", "Your appointment")
        .description(format!(
            "{} {} · {doctor}",
            calendar::short(a.day),
            calendar::hhmm(a.at)
        ))
        .param("appointment", &a.id);
    match notify::send_with_card(&text, card) {
        Ok(()) => Ok(()),
        Err(Error::ConsentRequired(_)) => {
            let mut pending: Vec<String> = store::get("pending/notices")?.unwrap_or_default();
            pending.push(a.id.clone());
            store::set("pending/notices", &pending)
        }
        Err(e) => {
            log::warn(&format!(
                "cannot send the booking confirmation: {}",
                describe(&e)
            ));
            Ok(())
        }
    }
}

fn consent(catalog: &Catalog, answer: ConsentAnswer) -> Result<View, AppError> {
    let pending: Vec<String> = store::get("pending/notices")?.unwrap_or_default();
    if answer.capability == "notify" && !pending.is_empty() {
        store::set("pending/notices", &Vec::<String>::new())?;
        if answer.granted {
            for id in &pending {
                if let Some(a) = appointments::get(id)? {
                    confirm_in_chat(catalog, &a)?;
                }
            }
        }
        if let Some(last) = pending.last() {
            return show_appointment(catalog, last, None);
        }
    }
    home(catalog)
}

fn show_appointment(catalog: &Catalog, id: &str, note: Option<&str>) -> Result<View, AppError> {
    let now = catalog.now();
    let Some(mut a) = appointments::get(id)? else {
        return Ok(screens::problem(
            "Not found",
            "No such appointment in your account.",
        ));
    };
    let mut note = note;
    if let Some(settled) = settle_held(catalog, &a)? {
        note = note.or(Some(settled));
        a = appointments::get(id)?.unwrap_or(a);
    }
    a = refunded_by_hospital(a)?;
    // A time still held is paid (or given up) from its own screen.
    if a.state == State::Held && a.hold_until > now.unix {
        return Ok(screens::confirm(catalog, &a, &now, note));
    }
    let queue = appointments::queue(catalog, &a, &now)?;
    Ok(screens::appointment(catalog, &a, &now, queue, note))
}

/// What went back when `a`'s order booked it (a sheet paid for more than
/// the fee): not a refund of the booking.
fn over_paid(a: &Appointment, order: &str) -> Result<u64, AppError> {
    Ok(appointments::of_order(order)?.map_or(0, |(_, amount)| amount.saturating_sub(a.kept())))
}

/// Booked appointment `a` as it stands after the hospital refunded its
/// whole fee from its back office: cancelled by the hospital, the time
/// given back. Any other appointment as it is.
fn refunded_by_hospital(mut a: Appointment) -> Result<Appointment, AppError> {
    let Some(order) = a.order.clone().filter(|_| a.state == State::Booked) else {
        return Ok(a);
    };
    let over = over_paid(&a, &order)?;
    let payments::OrderStatus::Refunded(total) = payments::status(&order)? else {
        return Ok(a);
    };
    let refunded = total.saturating_sub(over);
    if refunded < a.kept() {
        return Ok(a);
    }
    // The hospital's own system may have freed the time already.
    if let Err(e) = slots::cancel(&a.slot_key(), &a.id) {
        log::warn(&format!(
            "the time of {} refunded by the hospital: {e:?}",
            a.id
        ));
    }
    a.state = State::Cancelled {
        refunded,
        by_hospital: true,
    };
    appointments::save(&a)?;
    Ok(a)
}

/// The patient's appointment `id` if it can still be cancelled; otherwise
/// the screen that says why not.
fn booked_upcoming(catalog: &Catalog, id: &str) -> Result<Result<Appointment, View>, AppError> {
    let now = catalog.now();
    match appointments::get(id)?
        .map(refunded_by_hospital)
        .transpose()?
    {
        Some(a) if a.state == State::Booked && a.upcoming(&now) => Ok(Ok(a)),
        Some(a) => {
            let why = match a.state {
                State::Cancelled { .. } => "This appointment is already cancelled.",
                _ => "Only an upcoming booked appointment can be cancelled.",
            };
            show_appointment(catalog, &a.id, Some(why)).map(Err)
        }
        None => Ok(Err(screens::problem(
            "Not found",
            "No such appointment in your account.",
        ))),
    }
}

/// Cancel: refund by the rule, then free the slot. A retry after a crash
/// finds the refund already made and does not pay it twice.
fn cancel(catalog: &Catalog, id: &str) -> Result<View, AppError> {
    let mut a = match booked_upcoming(catalog, id)? {
        Ok(a) => a,
        Err(view) => return Ok(view),
    };
    let now = catalog.now();
    let refund = a.refund_now(&now);
    let order = a
        .order
        .clone()
        .ok_or_else(|| AppError::Failed("a booked appointment without its order".into()))?;
    let over = over_paid(&a, &order)?;
    let refunded = match payments::status(&order)? {
        payments::OrderStatus::Refunded(total) if total > over => total - over,
        _ => {
            payments::refund(&order, refund, &format!("cancel-{}", a.id))?;
            refund
        }
    };
    slots::cancel(&a.slot_key(), &a.id)?;
    a.state = State::Cancelled {
        refunded,
        by_hospital: false,
    };
    appointments::save(&a)?;
    show_appointment(
        catalog,
        &a.id,
        Some("Cancelled. The time is free for other patients."),
    )
}

fn mine(catalog: &Catalog) -> Result<View, AppError> {
    let mut all = appointments::all()?;
    if all.iter().any(|a| a.state == State::Held) {
        for a in &all {
            settle_held(catalog, a)?;
        }
        all = appointments::all()?;
    }
    let now = catalog.now();
    let all = all
        .into_iter()
        .map(|a| match a.upcoming(&now) {
            true => refunded_by_hospital(a),
            false => Ok(a),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(screens::mine(catalog, &all, &catalog.now()))
}

fn about(catalog: &Catalog) -> Result<View, AppError> {
    #[cfg(not(feature = "backend"))]
    let schedule = {
        let seeded = store::shared_get::<i64>("stats/catalog-seeded")?.unwrap_or(0);
        let days = store::shared_get::<i64>("stats/days-generated")?.unwrap_or(0);
        [
            ("Catalog set up", format!("{seeded} time(s)")),
            ("Days generated", days.to_string()),
        ]
    };
    #[cfg(feature = "backend")]
    let schedule = [("Kept by", format!("{}'s booking system", catalog.hospital))];
    Ok(screens::about(catalog, &schedule))
}

fn describe(e: &Error) -> String {
    match e {
        Error::Denied(m)
        | Error::ConsentRequired(m)
        | Error::QuotaExceeded(m)
        | Error::Invalid(m)
        | Error::NotFound(m)
        | Error::Unavailable(m) => m.clone(),
    }
}
