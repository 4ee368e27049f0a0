//! City Hospital's own booking system, as a provider runs it beside its
//! mini-program: doctors' weekly schedules, slots held while a patient
//! pays, bookings that become final only when the super-app host's signed
//! payment callback says the money moved, cancellations, and the insurance
//! check of a document presentation.
//!
//! It trusts nothing the mini-program says about who the patient is: every
//! request must carry the host's `superapp-assertion` for this backend's
//! origin (`superapp_sdk::assertion`), whose `sub` is the patient's
//! pseudonymous id, and money is believed only from callbacks signed by the
//! host (`superapp_sdk::callbacks`), each applied once by delivery id.
//!
//! The books live in memory: a real hospital keeps them in its database.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use superapp_sdk::{assertion, callbacks, clock};

/// How long a held slot waits for its payment, in seconds.
pub const HOLD_SECS: u64 = 600;

/// What the backend is told at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The host's Ed25519 public key (`GET /api/v1/host-key`).
    pub host_key: [u8; 32],
    /// This backend's origin as the app's manifest lists it, e.g.
    /// `https://booking.cityhospital.example`: the assertions' audience.
    pub origin: String,
    /// The fee of a consultation, in minor units.
    pub fee: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Doctor {
    pub id: String,
    pub name: String,
    pub department: String,
    /// Days of the week (0 = Monday) the doctor sees patients.
    pub weekdays: Vec<u8>,
    /// Minutes after midnight of the first and after the last slot.
    pub start: u32,
    pub end: u32,
    pub slot_minutes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Held for its patient until `expires_at`, waiting for the payment.
    Held,
    /// The payment settled.
    Booked,
    Cancelled,
}

#[derive(Debug, Clone, Serialize)]
pub struct Appointment {
    pub id: String,
    pub patient: String,
    pub doctor: String,
    pub day: String,
    pub time: String,
    pub fee: u64,
    pub state: Status,
    pub expires_at: u64,
    /// The host's payment order, once the callback named it.
    pub order: Option<String>,
    pub refunded: u64,
}

#[derive(Default)]
struct Books {
    appointments: BTreeMap<String, Appointment>,
    /// Delivery ids of callbacks already applied.
    applied: HashSet<String>,
    next: u64,
}

pub struct Hospital {
    config: Config,
    doctors: Vec<Doctor>,
    books: Mutex<Books>,
    /// The clock, in seconds since the Unix epoch (tests move it).
    now: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// A refused request: its status and a message, as a JSON error body.
#[derive(Debug)]
pub struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": {"message": self.1}}))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Refused {
    Refused(status, message.into())
}

type Answer = Result<Response, Refused>;

impl Hospital {
    pub fn new(config: Config, now: Box<dyn Fn() -> u64 + Send + Sync>) -> Hospital {
        Hospital {
            config,
            doctors: demo_doctors(),
            books: Mutex::new(Books::default()),
            now,
        }
    }

    /// The patient a request is from: the host's assertion, checked.
    fn patient(&self, headers: &HeaderMap) -> Result<String, Refused> {
        let header = headers
            .get(assertion::HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "no superapp-assertion"))?;
        assertion::verify(
            header,
            &self.config.host_key,
            &self.config.origin,
            (self.now)(),
        )
        .map(|a| a.sub)
        .map_err(|e| error(StatusCode::UNAUTHORIZED, e.to_string()))
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Free times of `doctor` on `day` (`YYYY-MM-DD`).
    fn free(&self, doctor: &Doctor, day: &str) -> Result<Vec<String>, String> {
        let days = clock::parse_date(day).ok_or("`day` is a date like 2026-12-02")?;
        // 1970-01-01 was a Thursday (3, with Monday 0).
        let weekday = (days + 3).rem_euclid(7) as u8;
        if !doctor.weekdays.contains(&weekday) {
            return Ok(Vec::new());
        }
        let now = (self.now)();
        let books = self.books();
        let taken = |time: &str| {
            books.appointments.values().any(|a| {
                a.doctor == doctor.id
                    && a.day == day
                    && a.time == time
                    && (a.state == Status::Booked
                        || (a.state == Status::Held && a.expires_at > now))
            })
        };
        Ok((doctor.start..doctor.end)
            .step_by(doctor.slot_minutes as usize)
            .map(|m| format!("{:02}:{:02}", m / 60, m % 60))
            .filter(|t| !taken(t))
            .collect())
    }
}

fn demo_doctors() -> Vec<Doctor> {
    let doctor = |id: &str, name: &str, department: &str, weekdays: &[u8]| Doctor {
        id: id.into(),
        name: name.into(),
        department: department.into(),
        weekdays: weekdays.to_vec(),
        start: 9 * 60,
        end: 12 * 60,
        slot_minutes: 30,
    };
    vec![
        doctor(
            "dr-osei",
            "Dr. Ama Osei",
            "Family medicine",
            &[0, 1, 2, 3, 4],
        ),
        doctor("dr-lind", "Dr. Erik Lind", "Cardiology", &[1, 3]),
        doctor("dr-haddad", "Dr. Rana Haddad", "Dermatology", &[0, 2, 4]),
    ]
}

type Shared = Arc<Hospital>;

/// The backend's routes; `/superapp/callbacks` is the URL the app's
/// manifest names under `[callbacks]`.
pub fn router(hospital: Shared) -> Router {
    Router::new()
        .route("/api/doctors", get(doctors))
        .route("/api/doctors/{id}/slots", get(slots))
        .route("/api/holds", post(hold))
        .route("/api/appointments", get(appointments))
        .route("/api/appointments/{id}/cancel", post(cancel))
        .route("/superapp/callbacks", post(callback))
        .with_state(hospital)
}

async fn doctors(State(h): State<Shared>, headers: HeaderMap) -> Answer {
    h.patient(&headers)?;
    Ok(Json(json!({"doctors": h.doctors, "fee": h.config.fee})).into_response())
}

#[derive(Deserialize)]
struct DayQuery {
    day: String,
}

async fn slots(
    State(h): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DayQuery>,
) -> Answer {
    h.patient(&headers)?;
    let doctor = h
        .doctors
        .iter()
        .find(|d| d.id == id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such doctor"))?;
    let times = h
        .free(doctor, &q.day)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(json!({"doctor": id, "day": q.day, "free": times})).into_response())
}

#[derive(Deserialize)]
struct HoldRequest {
    doctor: String,
    day: String,
    time: String,
}

/// Hold a free slot for the asserted patient; the app then asks the host
/// for the payment with the hold's id as its idempotency key.
async fn hold(State(h): State<Shared>, headers: HeaderMap, Json(req): Json<HoldRequest>) -> Answer {
    let patient = h.patient(&headers)?;
    let Some(doctor) = h.doctors.iter().find(|d| d.id == req.doctor) else {
        return Err(error(StatusCode::NOT_FOUND, "no such doctor"));
    };
    let free = match h.free(doctor, &req.day) {
        Ok(f) => f,
        Err(e) => return Err(error(StatusCode::BAD_REQUEST, e)),
    };
    if !free.contains(&req.time) {
        return Err(error(StatusCode::CONFLICT, "this time was just taken"));
    }
    let now = (h.now)();
    let mut books = h.books();
    books.next += 1;
    let id = format!("hold-{}", books.next);
    let appointment = Appointment {
        id: id.clone(),
        patient,
        doctor: req.doctor,
        day: req.day,
        time: req.time,
        fee: h.config.fee,
        state: Status::Held,
        expires_at: now + HOLD_SECS,
        order: None,
        refunded: 0,
    };
    books.appointments.insert(id, appointment.clone());
    Ok((StatusCode::CREATED, Json(appointment)).into_response())
}

async fn appointments(State(h): State<Shared>, headers: HeaderMap) -> Answer {
    let patient = h.patient(&headers)?;
    let books = h.books();
    let mine: Vec<&Appointment> = books
        .appointments
        .values()
        .filter(|a| a.patient == patient && a.state != Status::Held)
        .collect();
    Ok(Json(json!({"appointments": mine})).into_response())
}

/// Cancel a booking: answers what the app should refund (the whole fee a
/// day or more ahead, half later), which the host's refund callback then
/// confirms.
async fn cancel(State(h): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let patient = h.patient(&headers)?;
    let now = (h.now)();
    let mut books = h.books();
    let Some(a) = books
        .appointments
        .get_mut(&id)
        .filter(|a| a.patient == patient)
    else {
        return Err(error(StatusCode::NOT_FOUND, "no such appointment"));
    };
    if a.state != Status::Booked {
        return Err(error(
            StatusCode::CONFLICT,
            "only a booked appointment can be cancelled",
        ));
    }
    let starts = clock::parse_date(&a.day).map_or(0, |d| d.max(0) as u64 * 86_400)
        + a.time[..2].parse::<u64>().unwrap_or(0) * 3_600
        + a.time[3..].parse::<u64>().unwrap_or(0) * 60;
    let refund = if starts >= now + 86_400 {
        a.fee
    } else {
        a.fee / 2
    };
    a.state = Status::Cancelled;
    Ok(Json(json!({"appointment": a.clone(), "refund": refund})).into_response())
}

/// The host's signed payment callbacks: a settled payment books its hold
/// (the app used the hold's id as the payment's idempotency key); a refund
/// is recorded. Each delivery id is applied once; a retry is acknowledged.
async fn callback(State(h): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Answer {
    let Some(header) = headers.get(callbacks::HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(error(StatusCode::UNAUTHORIZED, "no superapp-signature"));
    };
    let n = match callbacks::verify(header, &body, &h.config.host_key, (h.now)()) {
        Ok(n) => n,
        Err(e) => return Err(error(StatusCode::UNAUTHORIZED, e.to_string())),
    };
    let mut books = h.books();
    if !books.applied.insert(n.id.clone()) {
        return Ok(Json(json!({"applied": false, "reason": "already applied"})).into_response());
    }
    let Some(a) = books.appointments.get(&n.reference).cloned() else {
        // Money for nothing we know: the app must refund it; say so.
        return Ok(Json(json!({"applied": true, "refund_due": n.amount})).into_response());
    };
    // A hold that ran out may have been taken by someone else since.
    let lost = books.appointments.values().any(|b| {
        b.id != a.id
            && b.doctor == a.doctor
            && b.day == a.day
            && b.time == a.time
            && b.state == Status::Booked
    });
    let a = books.appointments.get_mut(&n.reference).expect("just read");
    match n.kind.as_str() {
        "payment.settled" if a.patient != n.user || n.amount < a.fee => {
            return Ok(Json(json!({"applied": true, "refund_due": n.amount})).into_response());
        }
        "payment.settled" if lost => {
            a.order = Some(n.order);
            return Ok(Json(json!({"applied": true, "refund_due": n.amount, "reason": "the slot was taken after the hold ran out"})).into_response());
        }
        "payment.settled" => {
            a.order = Some(n.order);
            if a.state == Status::Held {
                a.state = Status::Booked;
            }
        }
        "payment.refunded" => a.refunded = n.refunded,
        _ => {}
    }
    Ok(Json(json!({"applied": true, "appointment": a.clone()})).into_response())
}

#[cfg(test)]
mod tests;
