//! The backend build (`--features backend`): the schedule and the slots
//! live in the hospital's own booking system, reached through the `http`
//! capability at the first origin the manifest lists (see
//! `examples/hospital-backend`). This module has the same functions as
//! `slots.rs`, so the screens and the flow are the same; the patient's own
//! appointment records stay in their storage as in the other build.
//!
//! The backend knows the patient from the host's signed assertion on
//! every request, books a slot for good only when the host's signed
//! payment callback reaches it, and checks a shared insurance policy
//! itself, so nothing here is taken on the app's word.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use superapp_sdk::http::{self, Method, Request};
use superapp_sdk::prelude::*;

use crate::appointments::Insurance;
use crate::calendar::{self, Day, Minutes, Now};
use crate::catalog::{Catalog, Doctor};

/// How long the backend holds a slot while the patient pays (its answer
/// says until when exactly).
pub use hospital_schedule::HOLD_SECS;

/// The backend's base URL: the first origin in the manifest.
fn base() -> Result<String, AppError> {
    let origins = http::origins()?;
    let first = origins.first().ok_or_else(|| {
        AppError::Failed("the manifest lists no origin for the hospital's backend".into())
    })?;
    Ok(first.trim_end_matches('/').to_string())
}

/// One request; the status and the JSON body (`null` if there is none).
fn call(method: Method, path: &str, body: Option<&Value>) -> Result<(u16, Value), AppError> {
    let mut headers = vec![("accept".to_string(), "application/json".to_string())];
    if body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let response = http::fetch(&Request {
        method,
        url: format!("{}{path}", base()?),
        headers,
        body: body.map(|b| b.to_string().into_bytes()),
        timeout_ms: None,
    })?;
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    if response.status >= 500 {
        return Err(AppError::Capability(Error::Unavailable(format!(
            "the hospital's booking system answered {}",
            response.status
        ))));
    }
    Ok((response.status, value))
}

/// A request that must succeed, its answer read as `T`.
fn expect<T: DeserializeOwned>(
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<T, AppError> {
    let (status, value) = call(method, path, body)?;
    if !(200..300).contains(&status) {
        return Err(AppError::Failed(format!(
            "the hospital's booking system refused: {}",
            message(&value, status)
        )));
    }
    serde_json::from_value(value)
        .map_err(|e| AppError::Failed(format!("the booking system's answer does not read: {e}")))
}

fn message(value: &Value, status: u16) -> String {
    value["error"]["message"]
        .as_str()
        .map_or_else(|| format!("status {status}"), str::to_string)
}

/// The schedule as the hospital publishes it.
pub fn catalog() -> Result<Catalog, AppError> {
    expect(Method::Get, "/api/catalog", None)
}

/// Where a slot is: `slot/DOCTOR/YYYY-MM-DD/HHMM`, as in the other build.
pub fn key(doctor: &str, day: Day, at: Minutes) -> String {
    format!(
        "slot/{doctor}/{}/{}",
        calendar::iso(day),
        calendar::key_time(at)
    )
}

/// The doctor, day and time of a slot key.
fn parts(key: &str) -> Result<(&str, &str, Minutes), AppError> {
    let mut it = key.strip_prefix("slot/").unwrap_or(key).splitn(3, '/');
    match (
        it.next(),
        it.next(),
        it.next().and_then(calendar::parse_time),
    ) {
        (Some(doctor), Some(day), Some(at)) => Ok((doctor, day, at)),
        _ => Err(AppError::Failed(format!("`{key}` is not a slot"))),
    }
}

pub enum Take {
    Held { until: u64 },
    JustTaken,
}

/// A hold as the backend answers it: until when it keeps the time.
#[derive(Deserialize)]
struct Hold {
    until: u64,
}

/// Hold the slot at `key` for this patient under `appointment`.
pub fn take(key: &str, _me: &str, appointment: &str, _now: u64) -> Result<Take, AppError> {
    let (doctor, day, at) = parts(key)?;
    let want = json!({"reference": appointment, "doctor": doctor, "day": day, "at": at});
    let (status, value) = call(Method::Post, "/api/holds", Some(&want))?;
    match status {
        200..=299 => {
            let b: Hold = serde_json::from_value(value)
                .map_err(|e| AppError::Failed(format!("a hold does not read: {e}")))?;
            Ok(Take::Held { until: b.until })
        }
        409 => Ok(Take::JustTaken),
        _ => Err(AppError::Failed(format!(
            "the booking system did not hold the time: {}",
            message(&value, status)
        ))),
    }
}

/// The patient paid `order` for `appointment`: whether the slot is still
/// theirs (the backend keeps it until the host's callback confirms the
/// money), or was taken after the hold ran out.
pub fn book(
    _key: &str,
    _me: &str,
    appointment: &str,
    order: &str,
    _now: u64,
) -> Result<bool, AppError> {
    let path = format!("/api/holds/{appointment}/paid");
    let (status, value) = call(Method::Post, &path, Some(&json!({"order": order})))?;
    match status {
        200..=299 => match value["state"].as_str() {
            Some(state) => Ok(state != "lost"),
            None => Err(AppError::Failed(
                "the hospital's booking system gave no state for the payment".into(),
            )),
        },
        // The hospital no longer knows the hold (its system lost it, or it
        // was given up): the time is not the patient's, so it is refunded.
        404 | 409 => Ok(false),
        _ => Err(AppError::Failed(format!(
            "the hospital's booking system refused: {}",
            message(&value, status)
        ))),
    }
}

/// Whether the hospital's system has the time booked for `appointment`:
/// it answers a second payment of one hold itself (see [`book`]), so this
/// build never takes a refused payment for a double one.
pub fn booked_for(_key: &str, _appointment: &str) -> Result<bool, AppError> {
    Ok(false)
}

/// Give up a hold (a booked time is not released: it is cancelled).
pub fn release(_key: &str, appointment: &str) -> Result<(), AppError> {
    let path = format!("/api/holds/{appointment}/release");
    let (status, value) = call(Method::Post, &path, None)?;
    match status {
        // Not known there: there is nothing to give up.
        200..=299 | 404 => Ok(()),
        _ => Err(AppError::Failed(format!(
            "the hospital's booking system did not free the time: {}",
            message(&value, status)
        ))),
    }
}

/// Cancel a booking (the app refunded it by the rule first).
pub fn cancel(_key: &str, appointment: &str) -> Result<(), AppError> {
    let _: Value = expect(
        Method::Post,
        &format!("/api/appointments/{appointment}/cancel"),
        None,
    )?;
    Ok(())
}

#[derive(Deserialize)]
struct DayTimes {
    free: Vec<Minutes>,
    booked: Vec<Minutes>,
}

fn day_times(doctor: &str, day: Day) -> Result<DayTimes, AppError> {
    expect(
        Method::Get,
        &format!("/api/doctors/{doctor}/days/{}", calendar::iso(day)),
        None,
    )
}

/// The times of `offered` nobody holds or booked.
pub fn free(
    doctor: &str,
    day: Day,
    offered: &[Minutes],
    _now: u64,
) -> Result<Vec<Minutes>, AppError> {
    let times = day_times(doctor, day)?;
    Ok(offered
        .iter()
        .copied()
        .filter(|m| times.free.contains(m))
        .collect())
}

/// Booked start times of `doctor` on `day`, sorted.
pub fn booked(doctor: &str, day: Day) -> Result<Vec<Minutes>, AppError> {
    let mut times = day_times(doctor, day)?.booked;
    times.sort_unstable();
    Ok(times)
}

/// The doctor's first free slot within the window, by one request.
pub fn next_free(
    _catalog: &Catalog,
    doctor: &Doctor,
    _now: &Now,
) -> Result<Option<(Day, Minutes)>, AppError> {
    #[derive(Deserialize)]
    struct Next {
        day: Option<String>,
        at: Option<Minutes>,
    }
    let next: Next = expect(
        Method::Get,
        &format!("/api/doctors/{}/next-free", doctor.id),
        None,
    )?;
    Ok(
        match (next.day.as_deref().and_then(calendar::parse_iso), next.at) {
            (Some(day), Some(at)) => Some((day, at)),
            _ => None,
        },
    )
}

/// The patient is asked for their policy under document `request`: the
/// host hands what they share straight to the hospital, which checks it;
/// this app never sees it.
pub fn expect_policy(appointment: &str, request: &str) -> Result<(), AppError> {
    let _: Value = expect(
        Method::Post,
        &format!("/api/holds/{appointment}/insurance"),
        Some(&json!({ "request": request })),
    )?;
    Ok(())
}

#[derive(Deserialize)]
struct Record {
    reference: String,
    fee: u64,
    insurance: Option<Insurance>,
    policy_problem: Option<String>,
}

fn record(appointment: &str) -> Result<Record, AppError> {
    #[derive(Deserialize)]
    struct All {
        appointments: Vec<Record>,
    }
    let all: All = expect(Method::Get, "/api/appointments", None)?;
    all.appointments
        .into_iter()
        .find(|r| r.reference == appointment)
        .ok_or_else(|| AppError::Failed(format!("the hospital does not know {appointment}")))
}

/// What the hospital made of the policy the patient shared: the policy and
/// the fee it brings, or why it does not take it.
pub fn policy_outcome(appointment: &str) -> Result<Result<(Insurance, u64), String>, AppError> {
    let r = record(appointment)?;
    Ok(match (r.insurance, r.policy_problem) {
        (Some(insurance), _) => Ok((insurance, r.fee)),
        (None, Some(why)) => Err(why),
        (None, None) => Err("the hospital has not received it yet".into()),
    })
}

/// What the hospital charges for `appointment` now.
pub fn fee(appointment: &str) -> Result<u64, AppError> {
    Ok(record(appointment)?.fee)
}
