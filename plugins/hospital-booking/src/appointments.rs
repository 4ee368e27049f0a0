//! A patient's appointments, kept in their own storage: from the hold,
//! through payment, to the visit or its cancellation. Also the rules a
//! patient is told: the refund on cancelling and the place in the queue.

use serde::{Deserialize, Serialize};
use superapp_sdk::prelude::*;

use crate::calendar::{Day, Minutes, Now};
use crate::catalog::Catalog;
use crate::slots;
use crate::store;

/// Cancelling at least this long before the start refunds everything;
/// later, half.
pub const FULL_REFUND_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// The slot is held while the patient pays.
    Held,
    /// Paid and in the doctor's list.
    Booked,
    /// Cancelled; `refunded` went back. By the patient, or by the
    /// hospital (`by_hospital`), which refunded the whole fee from its back
    /// office.
    Cancelled {
        refunded: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_hospital: bool,
    },
    /// Never paid: declined, expired, or the hold ran out.
    Released { reason: String },
    /// Paid after the hold ran out and someone else had the slot: the fee
    /// went back in full.
    Lost,
}

pub use hospital_schedule::Insurance;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appointment {
    /// The booking reference patients quote.
    pub id: String,
    pub doctor: String,
    pub day: Day,
    pub at: Minutes,
    /// Unix seconds of the start.
    pub starts: u64,
    /// What the patient pays: the full fee or the co-payment.
    pub fee: u64,
    pub insurance: Option<Insurance>,
    pub state: State,
    pub order: Option<String>,
    /// Until when the slot is held, while `Held`.
    pub hold_until: u64,
    /// What the hospital kept of the payment that booked it: `fee`, or
    /// less if an older sheet for less was paid. `None` until booked, and
    /// in records from before it was kept (when it was `fee`).
    #[serde(default)]
    pub paid: Option<u64>,
}

impl Appointment {
    pub fn slot_key(&self) -> String {
        slots::key(&self.doctor, self.day, self.at)
    }

    pub fn upcoming(&self, now: &Now) -> bool {
        self.starts > now.unix
    }

    /// What the booking cost the patient.
    pub fn kept(&self) -> u64 {
        self.paid.unwrap_or(self.fee)
    }

    /// What cancelling now gives back, by the stated rule.
    pub fn refund_now(&self, now: &Now) -> u64 {
        refund(self.kept(), self.starts, now.unix)
    }
}

/// The refund rule: everything up to 24 hours before the start, half after.
pub fn refund(paid: u64, starts: u64, now: u64) -> u64 {
    if now + FULL_REFUND_SECS <= starts {
        paid
    } else {
        paid / 2
    }
}

fn key(id: &str) -> String {
    format!("appt/{id}")
}

pub fn get(id: &str) -> Result<Option<Appointment>, AppError> {
    store::get(&key(id))
}

pub fn save(a: &Appointment) -> Result<(), AppError> {
    store::set(&key(&a.id), a)
}

/// Every appointment of this patient, soonest first.
pub fn all() -> Result<Vec<Appointment>, AppError> {
    let mut out = Vec::new();
    for k in store::keys("appt/")? {
        if let Some(a) = store::get::<Appointment>(&k)? {
            out.push(a);
        }
    }
    out.sort_by_key(|a| a.starts);
    Ok(out)
}

/// A new booking reference: `HB-` and 8 characters nobody can guess.
pub fn new_reference() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let code: String = random::bytes(8)
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("HB-{code}")
}

/// Which appointment a document request belongs to.
pub fn link_request(request: &str, appointment: &str) -> Result<(), AppError> {
    store::set(&format!("document/{request}"), &appointment)
}

pub fn of_request(request: &str) -> Result<Option<Appointment>, AppError> {
    match store::get::<String>(&format!("document/{request}"))? {
        Some(appointment) => get(&appointment),
        None => Ok(None),
    }
}

/// Which appointment a payment order belongs to, and its amount.
pub fn link_order(order: &str, appointment: &str, amount: u64) -> Result<(), AppError> {
    store::set(&format!("order/{order}"), &(appointment, amount))
}

/// The payment orders made for `appointment`, with their amounts.
pub fn orders_of(appointment: &str) -> Result<Vec<(String, u64)>, AppError> {
    let mut out = Vec::new();
    for k in store::keys("order/")? {
        if let Some((linked, amount)) = store::get::<(String, u64)>(&k)? {
            if linked == appointment {
                out.push((k["order/".len()..].to_string(), amount));
            }
        }
    }
    Ok(out)
}

pub fn of_order(order: &str) -> Result<Option<(Appointment, u64)>, AppError> {
    match store::get::<(String, u64)>(&format!("order/{order}"))? {
        Some((appointment, amount)) => Ok(get(&appointment)?.map(|a| (a, amount))),
        None => Ok(None),
    }
}

/// The patient's place in today's queue and the estimated wait: booked
/// patients before them whose consultation has not ended yet, each taking
/// one slot's time, and never sooner than the appointment itself.
pub fn queue(
    catalog: &Catalog,
    a: &Appointment,
    now: &Now,
) -> Result<Option<(usize, u64)>, AppError> {
    if a.day != now.day || a.state != State::Booked || !a.upcoming(now) {
        return Ok(None);
    }
    let Some(doctor) = catalog.doctor(&a.doctor) else {
        return Ok(None);
    };
    let ahead = slots::booked(&a.doctor, a.day)?
        .into_iter()
        .filter(|&m| m < a.at && m + doctor.slot_minutes > now.minutes)
        .count();
    let by_queue = ahead as u64 * u64::from(doctor.slot_minutes) * 60;
    let by_clock = a.starts.saturating_sub(now.unix);
    Ok(Some((ahead + 1, by_queue.max(by_clock))))
}

/// The claims of an insurance policy the patient shared, if it is valid
/// on the day of the appointment.
#[cfg(not(feature = "backend"))]
pub fn policy(claims: &[superapp_sdk::DisclosedClaim], day: Day) -> Result<Insurance, String> {
    Insurance::from_claims(
        claims.iter().map(|c| (c.name.as_str(), c.value.as_str())),
        day,
    )
}
