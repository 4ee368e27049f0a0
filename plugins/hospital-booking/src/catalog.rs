//! The hospital's departments, doctors and their weekly schedules, and the
//! dated slots generated from them: all kept in shared storage (in the
//! backend build, read from the hospital's system instead), so every
//! patient sees one schedule. The app seeds it on first launch and adds
//! each new day as the 14-day window moves on. Every write that creates
//! something is a compare-and-swap from "absent", so however many patients
//! launch at the same moment, each piece is written exactly once.

use std::collections::BTreeMap;

pub use hospital_schedule::{Catalog, Doctor, WINDOW_DAYS};
use superapp_sdk::prelude::*;

#[cfg(not(feature = "backend"))]
use crate::calendar;
use crate::calendar::{Day, Minutes, Now};
#[cfg(not(feature = "backend"))]
use crate::store;

/// One day's slots: start times per doctor id.
pub type DaySlots = BTreeMap<String, Vec<Minutes>>;

/// The hospital's clock: now in its time zone.
pub trait Local {
    fn now(&self) -> Now;
}

impl Local for Catalog {
    fn now(&self) -> Now {
        Now::at(clock::unix_seconds(), self.utc_offset_minutes)
    }
}

/// What the hospital starts with: its schedule as it publishes it (the
/// same one its own booking system serves).
#[cfg(not(feature = "backend"))]
fn default_catalog() -> Result<Catalog, AppError> {
    Catalog::published()
        .map_err(|e| AppError::Failed(format!("the bundled schedule does not read: {e}")))
}

/// The catalog, seeding it (exactly once across all patients) if this is
/// the hospital's first launch, and the day slots of the booking window.
#[cfg(not(feature = "backend"))]
pub fn load() -> Result<Catalog, AppError> {
    let catalog = match store::shared_get::<Catalog>("catalog")? {
        Some(c) => c,
        None => {
            let fresh = default_catalog()?;
            if store::shared_create("catalog", &fresh)? {
                // Only the one launch whose swap won counts itself.
                shared_storage::increment("stats/catalog-seeded", 1)?;
                log::info("seeded the hospital catalog");
                fresh
            } else {
                store::shared_get("catalog")?
                    .ok_or_else(|| AppError::Failed("the schedule vanished while loading".into()))?
            }
        }
    };
    ensure_window(&catalog)?;
    Ok(catalog)
}

/// Make sure every day of the booking window has its slots. A marker holds
/// the last day generated, so most launches read one key and stop.
#[cfg(not(feature = "backend"))]
fn ensure_window(catalog: &Catalog) -> Result<(), AppError> {
    let now = catalog.now();
    let last = now.day + WINDOW_DAYS - 1;
    if store::shared_get::<Day>("window/through")?.is_some_and(|through| through >= last) {
        return Ok(());
    }
    for day in now.day..=last {
        let slots: DaySlots = catalog
            .doctors
            .iter()
            .map(|d| (d.id.clone(), d.slots_on(day)))
            .collect();
        if store::shared_create(&format!("day/{}", calendar::iso(day)), &slots)? {
            shared_storage::increment("stats/days-generated", 1)?;
        }
    }
    // Moves forward only: a slower launch cannot move it back.
    let current = shared_storage::get("window/through")?;
    let behind = current
        .as_deref()
        .and_then(|b| serde_json::from_slice::<Day>(b).ok())
        .is_none_or(|through| through < last);
    if behind {
        let new = serde_json::to_vec(&last).map_err(|e| AppError::Failed(e.to_string()))?;
        shared_storage::compare_and_swap("window/through", current.as_deref(), Some(&new))?;
    }
    Ok(())
}

/// The backend build: the schedule as the hospital's system publishes it.
#[cfg(feature = "backend")]
pub fn load() -> Result<Catalog, AppError> {
    crate::slots::catalog()
}

/// The slots of `day` (empty outside the window), as generated when the
/// day entered the window.
#[cfg(not(feature = "backend"))]
pub fn day_slots(_catalog: &Catalog, day: Day) -> Result<DaySlots, AppError> {
    Ok(store::shared_get(&format!("day/{}", calendar::iso(day)))?.unwrap_or_default())
}

/// The backend build: the slots of `day` by the weekly hours (the backend
/// says which of them are free).
#[cfg(feature = "backend")]
pub fn day_slots(catalog: &Catalog, day: Day) -> Result<DaySlots, AppError> {
    Ok(catalog
        .doctors
        .iter()
        .map(|d| (d.id.clone(), d.slots_on(day)))
        .collect())
}
