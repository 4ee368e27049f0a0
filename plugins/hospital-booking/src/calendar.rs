//! Dates and times without a time-zone database: the hospital runs on one
//! fixed UTC offset, days are counted from the Unix epoch, and times of day
//! are minutes after midnight.

use superapp_sdk::clock;

/// A calendar day, as days since 1970-01-01.
pub type Day = i64;

/// Minutes after local midnight.
pub type Minutes = u32;

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Local time now, for a hospital `offset_minutes` east of UTC.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Seconds since the Unix epoch (UTC).
    pub unix: u64,
    pub day: Day,
    pub minutes: Minutes,
    offset_minutes: i32,
}

impl Now {
    pub fn at(unix: u64, offset_minutes: i32) -> Now {
        let local = unix as i64 + i64::from(offset_minutes) * 60;
        Now {
            unix,
            day: local.div_euclid(86_400),
            minutes: (local.rem_euclid(86_400) / 60) as Minutes,
            offset_minutes,
        }
    }

    /// Seconds since the epoch at local `day` and `minutes`.
    pub fn unix_of(&self, day: Day, minutes: Minutes) -> u64 {
        let local = day * 86_400 + i64::from(minutes) * 60;
        (local - i64::from(self.offset_minutes) * 60).max(0) as u64
    }
}

/// 0 = Monday … 6 = Sunday.
pub use hospital_schedule::weekday;

/// `YYYY-MM-DD`.
pub fn iso(day: Day) -> String {
    clock::format_date(day)
}

/// Parse `YYYY-MM-DD`, refusing dates that do not exist.
pub fn parse_iso(text: &str) -> Option<Day> {
    clock::parse_date(text)
}

/// `Fri 27 Nov`.
pub fn short(day: Day) -> String {
    let (_, m, d) = clock::civil_from_days(day);
    format!("{} {d} {}", WEEKDAYS[weekday(day)], MONTHS[m as usize - 1])
}

/// `09:30`.
pub fn hhmm(minutes: Minutes) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `0930`, for keys (sorts like the time).
pub fn key_time(minutes: Minutes) -> String {
    format!("{:02}{:02}", minutes / 60, minutes % 60)
}

/// Parse `0930` or `09:30`.
pub fn parse_time(text: &str) -> Option<Minutes> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: u32 = digits[..2].parse().ok()?;
    let m: u32 = digits[2..].parse().ok()?;
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// A wait in words: `now`, `25 min`, `3 h 10 min`, `2 days`.
pub fn wait(seconds: u64) -> String {
    let minutes = seconds.div_ceil(60);
    match minutes {
        0 => "now".to_string(),
        1..=59 => format!("{minutes} min"),
        60..=1439 => match minutes % 60 {
            0 => format!("{} h", minutes / 60),
            m => format!("{} h {m} min", minutes / 60),
        },
        _ => match minutes / 1440 {
            1 => "1 day".to_string(),
            d => format!("{d} days"),
        },
    }
}
