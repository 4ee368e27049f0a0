//! What the patient sees: one function per screen, drawing only from the
//! records it is given.

use superapp_sdk::prelude::*;

use crate::appointments::{Appointment, State, FULL_REFUND_SECS};
use crate::calendar::{self, Day, Minutes, Now};
use crate::catalog::{Catalog, Doctor, WINDOW_DAYS};
use crate::slots::HOLD_SECS;

/// The value of a "take this slot" button: `doctor/YYYY-MM-DD/HHMM`.
pub fn slot_value(doctor: &str, day: Day, at: Minutes) -> String {
    format!("{doctor}/{}/{}", calendar::iso(day), calendar::key_time(at))
}

fn when(day: Day, at: Minutes) -> String {
    format!("{} {}", calendar::short(day), calendar::hhmm(at))
}

fn back_home() -> Button {
    Button::new("Back to departments", "home").style(ButtonStyle::Secondary)
}

pub fn home(catalog: &Catalog, today: Option<(&Appointment, usize, u64)>) -> View {
    let mut view = View::new(&catalog.hospital).heading(&catalog.hospital);
    if let Some((a, place, wait)) = today {
        let doctor = catalog
            .doctor(&a.doctor)
            .map_or("your doctor", |d| d.name.as_str());
        view = view
            .subheading("Today")
            .text(format!(
                "{} with {doctor}: you are number {place} in the queue, estimated wait {}.",
                calendar::hhmm(a.at),
                calendar::wait(wait)
            ))
            .button(Button::new("Open appointment", "appointment").value(&a.id));
    }
    view = view.subheading("Book an appointment");
    for d in &catalog.departments {
        view = view.push(Element::Column(vec![
            Element::Button(Button::new(&d.name, "department").value(&d.id)),
            Element::Text(d.about.clone(), TextStyle::Muted),
        ]));
    }
    view.divider()
        .button(Button::new("My appointments", "mine").style(ButtonStyle::Secondary))
        .button(Button::new("Fees and rules", "about").style(ButtonStyle::Secondary))
}

/// One doctor in a department's list: the next free slot and the wait.
pub struct DoctorSummary<'a> {
    pub doctor: &'a Doctor,
    pub next: Option<(Day, Minutes, u64)>,
}

pub fn department(catalog: &Catalog, name: &str, doctors: &[DoctorSummary]) -> View {
    let mut view = View::new(name).heading(name);
    for s in doctors {
        let d = s.doctor;
        let mut row = vec![
            Element::Heading(2, d.name.clone()),
            Element::Text(
                format!(
                    "Consultation {} · {} min",
                    catalog.money(d.fee),
                    d.slot_minutes
                ),
                TextStyle::Muted,
            ),
        ];
        match s.next {
            Some((day, at, wait)) => {
                row.push(Element::Text(
                    format!("Next free: {} (in {})", when(day, at), calendar::wait(wait)),
                    TextStyle::Body,
                ));
                row.push(Element::Row(vec![
                    Element::Button(
                        Button::new(format!("Book {}", when(day, at)), "take")
                            .value(slot_value(&d.id, day, at)),
                    ),
                    Element::Button(
                        Button::new("Other times", "doctor")
                            .value(&d.id)
                            .style(ButtonStyle::Secondary),
                    ),
                ]));
            }
            None => row.push(Element::Badge(
                format!("Fully booked for {WINDOW_DAYS} days"),
                Tone::Warning,
            )),
        }
        view = view.push(Element::Column(row));
    }
    view.divider().button(back_home())
}

pub fn doctor(
    catalog: &Catalog,
    d: &Doctor,
    now: &Now,
    day: Day,
    free: &[Minutes],
    note: Option<&str>,
) -> View {
    let mut view = View::new(&d.name).heading(&d.name);
    if let Some(note) = note {
        view = view.styled(note, TextStyle::Error);
    }
    let last = now.day + WINDOW_DAYS - 1;
    view = view.form(
        Form::new("day", "Show times")
            .input(
                Input::select("doctor", "Doctor", [(d.id.as_str(), d.name.as_str())]).value(&d.id),
            )
            .input(
                Input::date_between("date", "Day", calendar::iso(now.day), calendar::iso(last))
                    .value(calendar::iso(day))
                    .required(),
            ),
    );
    view = view.subheading(format!("Free on {}", calendar::short(day)));
    if free.is_empty() {
        view = view.styled("No free times on this day.", TextStyle::Muted);
    } else {
        let buttons = free
            .iter()
            .map(|&at| {
                Element::Button(
                    Button::new(calendar::hhmm(at), "take")
                        .value(slot_value(&d.id, day, at))
                        .style(ButtonStyle::Secondary),
                )
            })
            .collect();
        view = view.push(Element::Row(buttons));
    }
    view.styled(
        format!(
            "Consultation {} · {} min",
            catalog.money(d.fee),
            d.slot_minutes
        ),
        TextStyle::Muted,
    )
    .divider()
    .button(
        Button::new("Back", "department")
            .value(&d.department)
            .style(ButtonStyle::Secondary),
    )
}

fn details(catalog: &Catalog, a: &Appointment) -> Element {
    let doctor = catalog.doctor(&a.doctor);
    let department = doctor
        .and_then(|d| catalog.department(&d.department))
        .map_or(String::new(), |d| d.name.clone());
    let mut pairs = vec![
        ("Reference".to_string(), a.id.clone()),
        (
            "Doctor".to_string(),
            doctor.map_or(a.doctor.clone(), |d| d.name.clone()),
        ),
        ("Department".to_string(), department),
        (
            "Date".to_string(),
            format!("{} ({})", calendar::short(a.day), calendar::iso(a.day)),
        ),
        ("Time".to_string(), calendar::hhmm(a.at)),
    ];
    match &a.insurance {
        Some(i) => {
            pairs.push((
                "Insurance".to_string(),
                format!("{} · {}", i.insurer, i.policy_number),
            ));
            pairs.push(("Co-payment".to_string(), catalog.money(a.fee)));
        }
        None => pairs.push(("Fee".to_string(), catalog.money(a.fee))),
    }
    Element::details(pairs)
}

fn badge(a: &Appointment, now: &Now) -> Element {
    let (text, tone) = match &a.state {
        State::Held if a.hold_until > now.unix => ("Held for you".to_string(), Tone::Warning),
        State::Held => ("Hold ran out".to_string(), Tone::Neutral),
        State::Booked if a.upcoming(now) => ("Booked".to_string(), Tone::Success),
        State::Booked => ("Visited".to_string(), Tone::Neutral),
        State::Cancelled { .. } => ("Cancelled".to_string(), Tone::Neutral),
        State::Released { .. } => ("Not booked".to_string(), Tone::Neutral),
        State::Lost => ("Refunded".to_string(), Tone::Danger),
    };
    Element::Badge(text, tone)
}

/// The held slot, before payment.
pub fn confirm(catalog: &Catalog, a: &Appointment, now: &Now, note: Option<&str>) -> View {
    let mut view = View::new("Confirm your appointment")
        .heading("Confirm your appointment")
        .push(badge(a, now))
        .push(details(catalog, a));
    if let Some(note) = note {
        view = view.styled(note, TextStyle::Emphasis);
    }
    let left = a.hold_until.saturating_sub(now.unix);
    view = view.text(format!(
        "This time is held for you for {} more. If it is not paid by then, it is freed for other patients.",
        calendar::wait(left)
    ));
    view = view.button(Button::new(format!("Pay {}", catalog.money(a.fee)), "pay").value(&a.id));
    if a.insurance.is_none() {
        let copay = catalog.doctor(&a.doctor).map_or(a.fee, |d| d.co_payment);
        view = view.button(
            Button::new(
                format!("Share my insurance policy (pay {})", catalog.money(copay)),
                "insurance",
            )
            .value(&a.id)
            .style(ButtonStyle::Secondary),
        );
    }
    view.button(
        Button::new("Choose another time", "release")
            .value(&a.id)
            .style(ButtonStyle::Secondary),
    )
}

pub fn waiting(title: &str, text: &str) -> View {
    View::new(title)
        .heading(title)
        .text(text)
        .styled(
            "The dialog is drawn by the super-app, not by the hospital.",
            TextStyle::Muted,
        )
        .button(Button::new("My appointments", "mine").style(ButtonStyle::Secondary))
}

/// One appointment, with the queue for today and what cancelling gives back.
pub fn appointment(
    catalog: &Catalog,
    a: &Appointment,
    now: &Now,
    queue: Option<(usize, u64)>,
    note: Option<&str>,
) -> View {
    let mut view = View::new("Appointment")
        .heading("Your appointment")
        .push(badge(a, now))
        .push(details(catalog, a));
    if let Some(note) = note {
        view = view.styled(note, TextStyle::Emphasis);
    }
    if let Some((place, wait)) = queue {
        view = view.subheading("Today's queue").push(Element::details([
            ("Your place", place.to_string()),
            ("Estimated wait", calendar::wait(wait)),
        ]));
    }
    match &a.state {
        State::Booked if a.upcoming(now) => {
            view = view.button(
                Button::new("Cancel appointment", "cancel")
                    .value(&a.id)
                    .style(ButtonStyle::Danger),
            );
        }
        State::Cancelled {
            refunded,
            by_hospital,
        } => {
            if *by_hospital {
                view = view.text(format!("{} cancelled this appointment.", catalog.hospital));
            }
            view = view.text(format!("{} was refunded to your wallet.", catalog.money(*refunded)));
        }
        State::Released { reason } => view = view.styled(reason, TextStyle::Muted),
        State::Lost => {
            view = view.text("Someone else booked this time after your hold ran out. Your payment was refunded in full.")
        }
        _ => {}
    }
    view.divider()
        .button(Button::new("My appointments", "mine").style(ButtonStyle::Secondary))
}

pub fn cancel(catalog: &Catalog, a: &Appointment, now: &Now) -> View {
    let refund = a.refund_now(now);
    let rule = if refund == a.kept() {
        "You cancel more than 24 hours ahead: the whole fee comes back."
    } else {
        "You cancel less than 24 hours ahead: half the fee comes back."
    };
    View::new("Cancel appointment")
        .heading("Cancel this appointment?")
        .push(details(catalog, a))
        .text(rule)
        .button(
            Button::new(
                format!("Cancel and refund {}", catalog.money(refund)),
                "cancel-confirm",
            )
            .value(&a.id)
            .style(ButtonStyle::Danger),
        )
        .button(
            Button::new("Keep it", "appointment")
                .value(&a.id)
                .style(ButtonStyle::Secondary),
        )
}

pub fn mine(catalog: &Catalog, all: &[Appointment], now: &Now) -> View {
    let mut view = View::new("My appointments").heading("My appointments");
    let row = |a: &Appointment| {
        let doctor = catalog
            .doctor(&a.doctor)
            .map_or(a.doctor.as_str(), |d| d.name.as_str());
        Element::Row(vec![
            Element::Text(format!("{} · {doctor}", when(a.day, a.at)), TextStyle::Body),
            badge(a, now),
            Element::Button(
                Button::new("Open", "appointment")
                    .value(&a.id)
                    .style(ButtonStyle::Secondary),
            ),
        ])
    };
    let (upcoming, past): (Vec<&Appointment>, Vec<&Appointment>) = all.iter().partition(|a| {
        a.upcoming(now)
            && (a.state == State::Booked || (a.state == State::Held && a.hold_until > now.unix))
    });
    view = view.subheading("Upcoming");
    if upcoming.is_empty() {
        view = view.styled("Nothing booked.", TextStyle::Muted);
    }
    for a in upcoming {
        view = view.push(row(a));
    }
    view = view.subheading("Past and cancelled");
    if past.is_empty() {
        view = view.styled("Nothing yet.", TextStyle::Muted);
    }
    for a in past.into_iter().rev() {
        view = view.push(row(a));
    }
    view.divider().button(back_home())
}

pub fn about(catalog: &Catalog, schedule: &[(&str, String)]) -> View {
    let mut fees: Vec<(String, String)> = catalog
        .doctors
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                format!(
                    "{} (insured: {})",
                    catalog.money(d.fee),
                    catalog.money(d.co_payment)
                ),
            )
        })
        .collect();
    fees.sort();
    View::new("Fees and rules")
        .heading("Fees and rules")
        .push(Element::details(fees))
        .subheading("Rules")
        .list([
            format!("A time you pick is held for you for {} minutes while you pay; unpaid, it is freed again.", HOLD_SECS / 60),
            "With a valid health-insurance policy you pay only the co-payment. Sharing it is up to you.".to_string(),
            format!(
                "Cancel up to {} hours before your appointment for a full refund; later, half the fee is refunded.",
                FULL_REFUND_SECS / 3600
            ),
            format!("You can book up to {WINDOW_DAYS} days ahead."),
        ])
        .subheading("Schedule")
        .push(Element::details(schedule.iter().cloned()))
        .divider()
        .button(back_home())
}

pub fn problem(title: &str, text: &str) -> View {
    View::new(title)
        .heading(title)
        .styled(text, TextStyle::Error)
        .button(back_home())
}
