//! City Hospital's schedule as it publishes it: departments, doctors with
//! their fees and weekly hours, and the times those hours give on a day.
//! The hospital's booking system (`examples/hospital-backend`) serves it;
//! the mini-program (`plugins/hospital-booking`) seeds shared storage from
//! it, or, in its backend build, reads it back from the booking system. One
//! crate, so the two sides cannot drift apart.
//!
//! Days are counted from 1970-01-01 in the hospital's local time (a fixed
//! offset east of UTC); times of day are minutes after local midnight.

use serde::{Deserialize, Serialize};

/// How many days ahead patients can book, today included.
pub const WINDOW_DAYS: i64 = 14;
/// How long a time is held for a patient while they pay, in seconds.
pub const HOLD_SECS: u64 = 10 * 60;
/// Most upcoming appointments one patient may have at once, so that no one
/// can block a doctor's week.
pub const MAX_UPCOMING: usize = 5;

/// The schedule as published, in `catalog.json`.
pub const PUBLISHED: &str = include_str!("../catalog.json");

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
    pub slot_minutes: u32,
    /// Consulting hours per weekday (0 = Monday): (from, to) in minutes.
    pub weekly: Vec<(usize, u32, u32)>,
}

impl Catalog {
    /// The schedule the hospital publishes.
    pub fn published() -> Result<Catalog, serde_json::Error> {
        serde_json::from_str(PUBLISHED)
    }

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

    /// Amounts as patients read them: `EUR 40.00`.
    pub fn money(&self, minor: u64) -> String {
        format!("{} {}.{:02}", self.currency, minor / 100, minor % 100)
    }

    /// The local day and minute of `unix` (seconds since the epoch).
    pub fn local(&self, unix: u64) -> (i64, u32) {
        let local = unix as i64 + i64::from(self.utc_offset_minutes) * 60;
        (
            local.div_euclid(86_400),
            (local.rem_euclid(86_400) / 60) as u32,
        )
    }

    /// Seconds since the epoch at local `day` and `minutes`.
    pub fn unix_of(&self, day: i64, minutes: u32) -> u64 {
        let local = day * 86_400 + i64::from(minutes) * 60;
        (local - i64::from(self.utc_offset_minutes) * 60).max(0) as u64
    }
}

/// A health-insurance policy as a patient shares it: the three fields the
/// hospital asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Insurance {
    pub insurer: String,
    pub policy_number: String,
    pub valid_until: String,
}

/// The credential type and fields the hospital asks for.
pub const POLICY_TYPE: &str = "health-insurance";
pub const POLICY_FIELDS: [&str; 3] = ["insurer", "policy-number", "valid-until"];

impl Insurance {
    /// The policy in disclosed `(name, value)` claims, if it is valid on
    /// local `day` (of an appointment); otherwise why not, for the patient.
    pub fn from_claims<'a>(
        claims: impl Iterator<Item = (&'a str, &'a str)> + Clone,
        day: i64,
    ) -> Result<Insurance, String> {
        let field = |name: &str| {
            claims
                .clone()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .ok_or_else(|| format!("the policy did not include `{name}`"))
        };
        let insurance = Insurance {
            insurer: field("insurer")?,
            policy_number: field("policy-number")?,
            valid_until: field("valid-until")?,
        };
        match superapp_sdk::clock::parse_date(&insurance.valid_until) {
            Some(until) if until >= day => Ok(insurance),
            Some(_) => Err(format!(
                "the policy is valid until {}, before the appointment",
                insurance.valid_until
            )),
            None => Err("the policy's validity date does not read".into()),
        }
    }
}

/// 0 = Monday … 6 = Sunday.
pub fn weekday(day: i64) -> usize {
    // 1970-01-01 was a Thursday.
    (day + 3).rem_euclid(7) as usize
}

impl Doctor {
    /// Slot start times on `day`, from the weekly hours: every slot that
    /// ends within them.
    pub fn slots_on(&self, day: i64) -> Vec<u32> {
        let weekday = weekday(day);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_schedule_reads_and_gives_whole_slots() {
        let c = Catalog::published().unwrap();
        assert!(c
            .doctors
            .iter()
            .all(|d| c.department(&d.department).is_some()));
        let weber = c.doctor("weber").unwrap();
        // 2026-12-07 is a Monday: 08:00 to 12:00 in 20-minute slots.
        let monday = 20_794;
        assert_eq!(weekday(monday), 0);
        let slots = weber.slots_on(monday);
        assert_eq!(
            (slots.len(), slots[0], *slots.last().unwrap()),
            (12, 480, 700)
        );
        assert_eq!(c.money(4_000), "EUR 40.00");
        let start = c.unix_of(monday, 480);
        assert_eq!(c.local(start), (monday, 480));
    }

    #[test]
    fn a_policy_needs_its_three_fields_and_to_cover_the_day() {
        let claims = [
            ("insurer", "AOK"),
            ("policy-number", "P-1"),
            ("valid-until", "2026-12-07"),
        ];
        let monday = 20_794;
        let ok = Insurance::from_claims(claims.iter().copied(), monday).unwrap();
        assert_eq!(ok.policy_number, "P-1");
        let late = Insurance::from_claims(claims.iter().copied(), monday + 1);
        assert!(late.unwrap_err().contains("before the appointment"));
        let short = Insurance::from_claims(claims[..2].iter().copied(), monday);
        assert!(short.unwrap_err().contains("valid-until"));
    }
}
