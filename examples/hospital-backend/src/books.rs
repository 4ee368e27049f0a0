//! The hospital's books: its published schedule and every booking, with
//! the rules that keep one patient per slot. Plain data and functions, no
//! HTTP: the routes in `lib.rs` call these under one lock.

use std::collections::{BTreeMap, HashMap, HashSet};

pub use hospital_schedule::{Catalog, Doctor, Insurance, HOLD_SECS, MAX_UPCOMING, WINDOW_DAYS};
use serde::{Deserialize, Serialize};
use superapp_sdk::clock;
use superapp_sdk::credentials::PresentationEnvelope;

/// How long a slot stays kept for a patient whose app says they paid,
/// until the host's signed callback confirms the money. It normally comes
/// within seconds, but the host retries a callback for a day while this
/// backend is down, so the claim lasts as long; each patient's claims count
/// against their upcoming appointments, so nobody can hold more that way.
pub const CLAIM_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Held for its patient until `until`, waiting for the payment.
    Held,
    /// The patient's app says the payment went through; kept for them
    /// until `until` while the host's callback is on its way.
    Paying,
    /// The host's callback confirmed the payment.
    Booked,
    /// Given up before it was paid.
    Released,
    /// Cancelled after it was booked.
    Cancelled,
    /// Paid after the hold ran out and someone else had the slot.
    Lost,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Booking {
    /// The booking reference the app made and patients quote.
    pub reference: String,
    /// The patient's pseudonymous id, from the host's assertion.
    pub patient: String,
    pub doctor: String,
    pub day: String,
    pub at: u32,
    /// Unix seconds of the start.
    pub starts: u64,
    /// What the patient owes: the fee, or the co-payment once a policy
    /// was verified.
    pub fee: u64,
    pub insurance: Option<Insurance>,
    /// The host's document request the patient's policy will come under.
    pub policy_request: Option<String>,
    /// Why the policy that came could not be used.
    pub policy_problem: Option<String>,
    pub state: State,
    /// Until when a hold (or a payment on its way) keeps the slot.
    pub until: u64,
    /// The host's payment order, once the app or the callback named it.
    pub order: Option<String>,
    /// Minor units the host's callbacks confirmed paid and refunded.
    pub paid: u64,
    pub refunded: u64,
    /// What the order that bought the time paid (an order asked for before
    /// the fee went down pays more, the difference refunded).
    #[serde(default)]
    pub bought_with: u64,
}

impl Booking {
    /// Whether this booking keeps others out of its slot at `now`.
    pub fn blocks(&self, now: u64) -> bool {
        match self.state {
            State::Held | State::Paying => now < self.until,
            State::Booked => true,
            State::Released | State::Cancelled | State::Lost => false,
        }
    }

    fn same_slot(&self, doctor: &str, day: &str, at: u32) -> bool {
        self.doctor == doctor && self.day == day && self.at == at
    }
}

/// A patient's request to hold a time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// The booking reference the app made.
    pub reference: String,
    pub doctor: String,
    /// `YYYY-MM-DD`, the hospital's local day.
    pub day: String,
    /// Minutes after local midnight.
    pub at: u32,
}

/// Why the books refused something; the routes turn each into a status.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    NotFound(&'static str),
    Invalid(String),
    /// Taken, or not allowed in this state.
    Conflict(String),
}

/// Everything the backend knows, written whole to its books file after
/// every change.
#[derive(Default, Clone, Serialize, Deserialize)]
pub struct Books {
    bookings: BTreeMap<String, Booking>,
    /// Delivery ids of callbacks already applied.
    pub applied: HashSet<String>,
    /// Nonces of presentations already accepted.
    pub presentations: HashSet<String>,
    /// Presentations the host delivered before the app named their hold:
    /// request id → (patient, presentation).
    unlinked: HashMap<String, (String, PresentationEnvelope)>,
}

/// A presentation to check for a booking: the booking as it is now.
pub struct ToCheck {
    pub booking: Booking,
    pub envelope: PresentationEnvelope,
}

impl Books {
    /// Whoever keeps the slot at `now`, other than `except`.
    fn holder(&self, doctor: &str, day: &str, at: u32, now: u64, except: &str) -> Option<&Booking> {
        self.bookings
            .values()
            .find(|b| b.reference != except && b.same_slot(doctor, day, at) && b.blocks(now))
    }

    /// Free and booked start times of `doctor` on local `day`: free ones
    /// only ahead of `now`; booked ones (for the queue) all day.
    pub fn day(
        &self,
        catalog: &Catalog,
        doctor: &Doctor,
        day: i64,
        now: u64,
    ) -> (Vec<u32>, Vec<u32>) {
        let date = clock::format_date(day);
        let (today, minute) = catalog.local(now);
        let mut free = Vec::new();
        let mut booked = Vec::new();
        for at in doctor.slots_on(day) {
            match self.holder(&doctor.id, &date, at, now, "") {
                Some(b) if matches!(b.state, State::Booked | State::Paying) => booked.push(at),
                Some(_) => {}
                None if day > today || (day == today && at > minute) => free.push(at),
                None => {}
            }
        }
        (free, booked)
    }

    /// The first free slot of `doctor` within the booking window.
    pub fn next_free(&self, catalog: &Catalog, doctor: &Doctor, now: u64) -> Option<(i64, u32)> {
        let (today, _) = catalog.local(now);
        (today..today + WINDOW_DAYS).find_map(|day| {
            let (free, _) = self.day(catalog, doctor, day, now);
            free.first().map(|&at| (day, at))
        })
    }

    /// Hold a free slot for `patient` under the app's `reference`. A new
    /// hold gives up the patient's previous one, as the app does.
    pub fn hold(
        &mut self,
        catalog: &Catalog,
        patient: &str,
        want: &HoldRequest,
        now: u64,
    ) -> Result<Booking, Refusal> {
        let HoldRequest {
            reference,
            doctor,
            day: date,
            at,
        } = want;
        let (reference, doctor, date, at) =
            (reference.as_str(), doctor.as_str(), date.as_str(), *at);
        if reference.is_empty() || reference.len() > 64 {
            return Err(Refusal::Invalid("a reference is 1 to 64 characters".into()));
        }
        if let Some(b) = self.bookings.get(reference) {
            return if b.patient == patient && b.same_slot(doctor, date, at) && b.blocks(now) {
                Ok(b.clone())
            } else {
                Err(Refusal::Conflict("this reference is taken".into()))
            };
        }
        let d = catalog
            .doctor(doctor)
            .ok_or(Refusal::NotFound("no such doctor"))?;
        let day = clock::parse_date(date)
            .ok_or_else(|| Refusal::Invalid("`day` is a date like 2026-12-02".into()))?;
        let (today, _) = catalog.local(now);
        if day < today || day >= today + WINDOW_DAYS {
            return Err(Refusal::Invalid(format!(
                "appointments can be booked from today up to {WINDOW_DAYS} days ahead"
            )));
        }
        let (free, _) = self.day(catalog, d, day, now);
        if !d.slots_on(day).contains(&at) {
            return Err(Refusal::Invalid("that time is not offered".into()));
        }
        if !free.contains(&at) {
            return Err(Refusal::Conflict("this time was just taken".into()));
        }
        let upcoming = self
            .bookings
            .values()
            .filter(|b| {
                b.patient == patient
                    && b.starts > now
                    && (b.state == State::Booked || (b.state == State::Paying && b.blocks(now)))
            })
            .count();
        if upcoming >= MAX_UPCOMING {
            return Err(Refusal::Invalid(format!(
                "at most {MAX_UPCOMING} upcoming appointments per patient"
            )));
        }
        for b in self.bookings.values_mut() {
            if b.patient == patient && b.state == State::Held {
                b.state = State::Released;
            }
        }
        let booking = Booking {
            reference: reference.to_string(),
            patient: patient.to_string(),
            doctor: d.id.clone(),
            day: date.to_string(),
            at,
            starts: catalog.unix_of(day, at),
            fee: d.fee,
            insurance: None,
            policy_request: None,
            policy_problem: None,
            state: State::Held,
            until: now + HOLD_SECS,
            order: None,
            paid: 0,
            refunded: 0,
            bought_with: 0,
        };
        self.bookings
            .insert(booking.reference.clone(), booking.clone());
        Ok(booking)
    }

    /// `patient`'s booking `reference`.
    pub fn mine(&mut self, patient: &str, reference: &str) -> Result<&mut Booking, Refusal> {
        self.bookings
            .get_mut(reference)
            .filter(|b| b.patient == patient)
            .ok_or(Refusal::NotFound("no such appointment"))
    }

    pub fn all(&self) -> Vec<Booking> {
        self.bookings.values().cloned().collect()
    }

    pub fn all_of(&self, patient: &str) -> Vec<Booking> {
        self.bookings
            .values()
            .filter(|b| b.patient == patient)
            .cloned()
            .collect()
    }

    /// The patient's app says `order` paid for `reference`: keep the slot
    /// for them until the callback confirms it, unless someone else took
    /// it after the hold ran out (then the app refunds).
    pub fn paying(
        &mut self,
        patient: &str,
        reference: &str,
        order: &str,
        now: u64,
    ) -> Result<Booking, Refusal> {
        let b = self.mine(patient, reference)?.clone();
        match b.state {
            State::Booked | State::Lost => return Ok(b),
            State::Held | State::Paying => {}
            State::Released | State::Cancelled => {
                return Err(Refusal::Conflict("this appointment was given up".into()))
            }
        }
        let lost = self
            .holder(&b.doctor, &b.day, b.at, now, reference)
            .is_some();
        let b = self.mine(patient, reference)?;
        if lost {
            b.state = State::Lost;
        } else if b.state == State::Held {
            b.state = State::Paying;
            b.until = now + CLAIM_SECS;
        }
        b.order = Some(order.to_string());
        Ok(b.clone())
    }

    /// The patient's policy for `reference` will arrive under the host's
    /// document `request`; if it already did, it is to be checked now.
    pub fn expect_policy(
        &mut self,
        patient: &str,
        reference: &str,
        request: &str,
    ) -> Result<Option<ToCheck>, Refusal> {
        let b = self.mine(patient, reference)?;
        if b.state != State::Held {
            return Err(Refusal::Conflict(
                "only a held time can change its fee".into(),
            ));
        }
        b.policy_request = Some(request.to_string());
        b.policy_problem = None;
        let booking = b.clone();
        Ok(match self.unlinked.remove(request) {
            Some((user, envelope)) if user == patient => Some(ToCheck { booking, envelope }),
            Some(other) => {
                self.unlinked.insert(request.to_string(), other);
                None
            }
            None => None,
        })
    }

    /// The host delivered what `user` shared under document `request`: the
    /// booking it is for, to check, or kept until the app names it.
    pub fn presented(
        &mut self,
        user: &str,
        request: &str,
        envelope: PresentationEnvelope,
    ) -> Option<ToCheck> {
        let booking = self
            .bookings
            .values()
            .find(|b| b.patient == user && b.policy_request.as_deref() == Some(request));
        match booking {
            Some(b) => Some(ToCheck {
                booking: b.clone(),
                envelope,
            }),
            None => {
                self.unlinked
                    .insert(request.to_string(), (user.to_string(), envelope));
                None
            }
        }
    }

    /// The outcome of checking a policy for `reference`: verified (with its
    /// nonce, accepted once), it lowers the fee to `co_payment`.
    pub fn policy_checked(
        &mut self,
        reference: &str,
        outcome: Result<(Insurance, String), String>,
        co_payment: u64,
    ) {
        let outcome = match outcome {
            Ok((insurance, nonce)) if self.presentations.insert(nonce.clone()) => Ok(insurance),
            Ok(_) => Err("this presentation was already used".to_string()),
            Err(why) => Err(why),
        };
        let Some(b) = self.bookings.get_mut(reference) else {
            return;
        };
        match outcome {
            Ok(_) if b.state != State::Held => {
                b.policy_problem = Some("the time is no longer held".into());
            }
            Ok(insurance) => {
                b.fee = co_payment;
                b.insurance = Some(insurance);
                b.policy_problem = None;
            }
            Err(why) => b.policy_problem = Some(why),
        }
    }

    /// Give up a hold that was not paid; the slot is free again. A paid
    /// one is not given up this way (a payment event the app lost must not
    /// cancel a booking the money bought): it is cancelled explicitly.
    pub fn release(&mut self, patient: &str, reference: &str) -> Result<Booking, Refusal> {
        let b = self.mine(patient, reference)?;
        match b.state {
            State::Held => b.state = State::Released,
            State::Paying | State::Booked => {
                return Err(Refusal::Conflict(
                    "this time is paid for: cancel it instead".into(),
                ))
            }
            State::Released | State::Cancelled | State::Lost => {}
        }
        Ok(b.clone())
    }

    /// Cancel a booking; the slot is free again. The refund the app makes
    /// is confirmed by the host's callback.
    pub fn cancel(&mut self, patient: &str, reference: &str) -> Result<Booking, Refusal> {
        let b = self.mine(patient, reference)?;
        match b.state {
            State::Booked | State::Paying => b.state = State::Cancelled,
            State::Cancelled => {}
            State::Held | State::Released | State::Lost => {
                return Err(Refusal::Conflict(
                    "only a booked time can be cancelled".into(),
                ))
            }
        }
        Ok(b.clone())
    }

    /// A settled payment, from the host's signed callback: the booking it
    /// names (by the app's idempotency key, `REFERENCE-AMOUNT`) is final.
    /// Returns what is owed back, if the money cannot buy the slot.
    pub fn settled(
        &mut self,
        user: &str,
        key: &str,
        order: &str,
        amount: u64,
        now: u64,
    ) -> Option<u64> {
        let reference = key.rsplit_once('-').map_or(key, |(r, _)| r).to_string();
        let Some(b) = self.bookings.get(&reference).cloned() else {
            return Some(amount);
        };
        if b.patient != user || amount < b.fee {
            return Some(amount);
        }
        let taken = b.state != State::Booked
            && self
                .holder(&b.doctor, &b.day, b.at, now, &reference)
                .is_some();
        let b = self.bookings.get_mut(&reference).expect("just read");
        b.paid += amount;
        b.order.get_or_insert_with(|| order.to_string());
        match b.state {
            State::Held | State::Paying if !taken => {
                b.state = State::Booked;
                b.order = Some(order.to_string());
                b.bought_with = amount;
                None
            }
            State::Booked if b.paid > amount => Some(amount),
            State::Booked => None,
            _ => {
                if b.state != State::Cancelled {
                    b.state = State::Lost;
                }
                Some(amount)
            }
        }
    }

    /// A refund of `user`'s payment `order` under `key`, `total` refunded
    /// of it so far, from the host's callback. The whole of what bought a
    /// booked time given back (from the hospital's back office) cancels
    /// the booking and frees the time.
    pub fn refunded(&mut self, user: &str, key: &str, order: &str, total: u64) {
        let reference = key.rsplit_once('-').map_or(key, |(r, _)| r);
        if let Some(b) = self
            .bookings
            .get_mut(reference)
            .filter(|b| b.patient == user)
        {
            b.refunded = b.refunded.max(total);
            let bought_it = b.order.as_deref() == Some(order) && b.bought_with > 0;
            if b.state == State::Booked && bought_it && total >= b.bought_with {
                b.state = State::Cancelled;
            }
        }
    }
}
