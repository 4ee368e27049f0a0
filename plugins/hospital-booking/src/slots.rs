//! Time slots in shared storage. A free slot has no record; taking one is
//! a compare-and-swap from "absent" (or from a hold that ran out) to a
//! hold, and paying turns that exact hold into a booking. Two patients can
//! never both succeed: the second swap finds the first one's record.

use serde::{Deserialize, Serialize};
use superapp_sdk::prelude::*;

use crate::calendar::{self, Day, Minutes, Now};
use crate::catalog::{self, Catalog, Doctor};
use crate::store;

pub use hospital_schedule::HOLD_SECS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Slot {
    /// Held for `by` until `until` (Unix seconds) while they pay.
    Held {
        by: String,
        appointment: String,
        until: u64,
    },
    Booked {
        by: String,
        appointment: String,
        /// The payment that booked it (absent in records from before it
        /// was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<String>,
    },
}

impl Slot {
    pub fn appointment(&self) -> &str {
        match self {
            Slot::Held { appointment, .. } | Slot::Booked { appointment, .. } => appointment,
        }
    }

    /// Whether this record still keeps others out at `now`.
    pub fn blocks(&self, now: u64) -> bool {
        match self {
            Slot::Held { until, .. } => now < *until,
            Slot::Booked { .. } => true,
        }
    }
}

/// Where a slot lives: `slot/DOCTOR/YYYY-MM-DD/HHMM`.
pub fn key(doctor: &str, day: Day, at: Minutes) -> String {
    format!(
        "slot/{doctor}/{}/{}",
        calendar::iso(day),
        calendar::key_time(at)
    )
}

/// A slot's record as stored, with its bytes for a later swap.
pub fn read(key: &str) -> Result<Option<(Vec<u8>, Slot)>, AppError> {
    match shared_storage::get(key)? {
        Some(bytes) => {
            let slot = store::decode(&bytes)?;
            Ok(Some((bytes, slot)))
        }
        None => Ok(None),
    }
}

/// The outcome of trying to take a slot.
pub enum Take {
    Held {
        until: u64,
    },
    /// Someone else holds or booked it.
    JustTaken,
}

/// Hold the slot at `key` for `me`, if it is free (or its hold ran out).
pub fn take(key: &str, me: &str, appointment: &str, now: u64) -> Result<Take, AppError> {
    let until = now + HOLD_SECS;
    let hold = Slot::Held {
        by: me.to_string(),
        appointment: appointment.to_string(),
        until,
    };
    let swapped = match read(key)? {
        None => store::shared_create(key, &hold)?,
        Some((bytes, old)) if !old.blocks(now) => store::shared_swap(key, &bytes, Some(&hold))?,
        Some(_) => false,
    };
    Ok(if swapped {
        Take::Held { until }
    } else {
        Take::JustTaken
    })
}

/// Turn `me`'s hold into a booking paid by `order`. A hold that ran out
/// still becomes a booking if nobody took the slot meanwhile; `false` if
/// someone did, or if another payment of the same appointment booked it
/// first (two sheets confirmed at once: this one is then paid twice).
pub fn book(
    key: &str,
    me: &str,
    appointment: &str,
    order: &str,
    now: u64,
) -> Result<bool, AppError> {
    let booked = Slot::Booked {
        by: me.to_string(),
        appointment: appointment.to_string(),
        order: Some(order.to_string()),
    };
    // A lost race re-reads: what won decides.
    for _ in 0..3 {
        let done = match read(key)? {
            None => store::shared_create(key, &booked)?,
            Some((_, old)) if old == booked => return Ok(true),
            Some((
                _,
                Slot::Booked {
                    appointment: a,
                    order: o,
                    ..
                },
            )) if a == appointment => {
                return Ok(o.is_none());
            }
            Some((bytes, old)) if old.appointment() == appointment || !old.blocks(now) => {
                store::shared_swap(key, &bytes, Some(&booked))?
            }
            Some(_) => return Ok(false),
        };
        if done {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `appointment` has the slot booked (by any of its payments).
pub fn booked_for(key: &str, appointment: &str) -> Result<bool, AppError> {
    Ok(matches!(read(key)?, Some((_, Slot::Booked { appointment: a, .. })) if a == appointment))
}

/// Free the slot if `appointment` holds it.
pub fn release(key: &str, appointment: &str) -> Result<(), AppError> {
    if let Some((bytes, old @ Slot::Held { .. })) = read(key)? {
        if old.appointment() == appointment {
            store::shared_swap::<Slot>(key, &bytes, None)?;
        }
    }
    Ok(())
}

/// Cancel `appointment`'s booking: its time is free again.
pub fn cancel(key: &str, appointment: &str) -> Result<(), AppError> {
    if let Some((bytes, old)) = read(key)? {
        if old.appointment() == appointment {
            store::shared_swap::<Slot>(key, &bytes, None)?;
        }
    }
    Ok(())
}

/// The start times on `day` that nobody holds or booked at `now`, of
/// those in `offered`.
pub fn free(
    doctor: &str,
    day: Day,
    offered: &[Minutes],
    now: u64,
) -> Result<Vec<Minutes>, AppError> {
    let prefix = format!("slot/{doctor}/{}/", calendar::iso(day));
    let mut taken = Vec::new();
    for k in store::shared_keys(&prefix)? {
        let blocked = match read(&k)? {
            Some((_, slot)) => slot.blocks(now),
            None => false,
        };
        if blocked {
            if let Some(at) = k.rsplit('/').next().and_then(calendar::parse_time) {
                taken.push(at);
            }
        }
    }
    Ok(offered
        .iter()
        .copied()
        .filter(|m| !taken.contains(m))
        .collect())
}

/// Booked start times of `doctor` on `day`, sorted.
pub fn booked(doctor: &str, day: Day) -> Result<Vec<Minutes>, AppError> {
    let prefix = format!("slot/{doctor}/{}/", calendar::iso(day));
    let mut out = Vec::new();
    for k in store::shared_keys(&prefix)? {
        if let Some((_, Slot::Booked { .. })) = read(&k)? {
            if let Some(at) = k.rsplit('/').next().and_then(calendar::parse_time) {
                out.push(at);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The first slot of `doctor` nobody has, from now on, within the window.
pub fn next_free(
    catalog: &Catalog,
    doctor: &Doctor,
    now: &Now,
) -> Result<Option<(Day, Minutes)>, AppError> {
    for day in now.day..now.day + catalog::WINDOW_DAYS {
        let offered = catalog::day_slots(catalog, day)?
            .remove(&doctor.id)
            .unwrap_or_default();
        let ahead: Vec<Minutes> = offered
            .into_iter()
            .filter(|&m| day > now.day || m > now.minutes)
            .collect();
        if let Some(first) = free(&doctor.id, day, &ahead, now.unix)?.first() {
            return Ok(Some((day, *first)));
        }
    }
    Ok(None)
}
