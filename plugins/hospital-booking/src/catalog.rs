//! The hospital's departments, doctors and their weekly schedules, and the
//! dated slots generated from them: all kept in shared storage, so every
//! patient sees one schedule. The app seeds it on first launch and adds
//! each new day as the 14-day window moves on. Every write that creates
//! something is a compare-and-swap from "absent", so however many patients
//! launch at the same moment, each piece is written exactly once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use superapp_sdk::prelude::*;

use crate::calendar::{self, Day, Minutes, Now};
use crate::store;

/// How many days ahead patients can book, today included.
pub const WINDOW_DAYS: i64 = 14;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    pub hospital: String,
    /// The hospital's time zone, as a fixed offset east of UTC.
    pub utc_offset_minutes: i32,
    pub currency: String,
    pub departments: Vec<Department>,
    pub doctors: Vec<Doctor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Department {
    pub id: String,
    pub name: String,
    pub about: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Doctor {
    pub id: String,
    pub name: String,
    pub department: String,
    /// The full consultation fee, in minor units.
    pub fee: u64,
    /// What an insured patient pays, in minor units.
    pub co_payment: u64,
    pub slot_minutes: Minutes,
    /// Consulting hours per weekday (0 = Monday): (from, to) in minutes.
    pub weekly: Vec<(usize, Minutes, Minutes)>,
}

/// One day's slots: start times per doctor id.
pub type DaySlots = BTreeMap<String, Vec<Minutes>>;

impl Catalog {
    pub fn department(&self, id: &str) -> Option<&Department> {
        self.departments.iter().find(|d| d.id == id)
    }

    pub fn doctor(&self, id: &str) -> Option<&Doctor> {
        self.doctors.iter().find(|d| d.id == id)
    }

    pub fn doctors_in<'a>(&'a self, department: &'a str) -> impl Iterator<Item = &'a Doctor> {
        self.doctors
            .iter()
            .filter(move |d| d.department == department)
    }

    pub fn now(&self) -> Now {
        Now::at(clock::unix_seconds(), self.utc_offset_minutes)
    }

    /// Amounts as patients read them: `EUR 40.00`.
    pub fn money(&self, minor: u64) -> String {
        format!("{} {}.{:02}", self.currency, minor / 100, minor % 100)
    }
}

impl Doctor {
    /// Slot start times on `day`, from the weekly schedule.
    pub fn slots_on(&self, day: Day) -> Vec<Minutes> {
        let weekday = calendar::weekday(day);
        let step = self.slot_minutes.max(5);
        self.weekly
            .iter()
            .filter(|(d, _, _)| *d == weekday)
            .flat_map(|&(_, from, to)| {
                (from..to)
                    .step_by(step as usize)
                    .filter(move |m| m + step <= to)
            })
            .collect()
    }
}

/// What the hospital starts with.
fn default_catalog() -> Catalog {
    let doctor = |id: &str,
                  name: &str,
                  department: &str,
                  fee,
                  slot,
                  weekly: &[(usize, Minutes, Minutes)]| Doctor {
        id: id.into(),
        name: name.into(),
        department: department.into(),
        fee,
        co_payment: 1_000,
        slot_minutes: slot,
        weekly: weekly.to_vec(),
    };
    const H: Minutes = 60;
    Catalog {
        hospital: "City Hospital".into(),
        utc_offset_minutes: 60,
        currency: "EUR".into(),
        departments: vec![
            Department {
                id: "general".into(),
                name: "General medicine".into(),
                about: "Check-ups, colds, referrals.".into(),
            },
            Department {
                id: "cardiology".into(),
                name: "Cardiology".into(),
                about: "Heart and blood pressure.".into(),
            },
            Department {
                id: "paediatrics".into(),
                name: "Paediatrics".into(),
                about: "Children up to 16.".into(),
            },
        ],
        doctors: vec![
            doctor(
                "weber",
                "Dr. Anna Weber",
                "general",
                4_000,
                20,
                &[
                    (0, 8 * H, 12 * H),
                    (1, 8 * H, 12 * H),
                    (2, 13 * H, 17 * H),
                    (3, 8 * H, 12 * H),
                    (4, 8 * H, 12 * H),
                    (5, 9 * H, 11 * H),
                ],
            ),
            doctor(
                "okafor",
                "Dr. Chidi Okafor",
                "general",
                4_000,
                20,
                &[
                    (0, 13 * H, 17 * H),
                    (2, 8 * H, 12 * H),
                    (4, 13 * H, 17 * H),
                    (6, 10 * H, 12 * H),
                ],
            ),
            doctor(
                "lindqvist",
                "Dr. Eva Lindqvist",
                "cardiology",
                9_000,
                30,
                &[(1, 9 * H, 13 * H), (3, 9 * H, 13 * H), (5, 9 * H, 12 * H)],
            ),
            doctor(
                "haddad",
                "Dr. Omar Haddad",
                "cardiology",
                9_000,
                30,
                &[(0, 9 * H, 12 * H), (2, 14 * H, 17 * H), (4, 9 * H, 12 * H)],
            ),
            doctor(
                "rossi",
                "Dr. Giulia Rossi",
                "paediatrics",
                5_000,
                15,
                &[
                    (0, 8 * H, 11 * H),
                    (1, 14 * H, 17 * H),
                    (2, 8 * H, 11 * H),
                    (3, 14 * H, 17 * H),
                    (4, 8 * H, 11 * H),
                    (6, 9 * H, 11 * H),
                ],
            ),
        ],
    }
}

/// The catalog, seeding it (exactly once across all patients) if this is
/// the hospital's first launch, and the day slots of the booking window.
pub fn load() -> Result<Catalog, AppError> {
    let catalog = match store::shared_get::<Catalog>("catalog")? {
        Some(c) => c,
        None => {
            let fresh = default_catalog();
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

/// The slots of `day` (empty outside the window).
pub fn day_slots(day: Day) -> Result<DaySlots, AppError> {
    Ok(store::shared_get(&format!("day/{}", calendar::iso(day)))?.unwrap_or_default())
}
