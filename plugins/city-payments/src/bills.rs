//! The bills a new account starts with: this month's electricity and
//! internet, last month's electricity (already overdue), the quarter's
//! water and the year's waste collection. Amounts vary per customer, as
//! meter readings would.

use superapp_sdk::clock;

use crate::account::Bill;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A number from the customer id, stable for that customer.
fn reading(customer: &str, salt: u64) -> u64 {
    customer
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64 ^ salt, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
}

/// `base` minor units plus up to `spread` more, per customer.
fn amount(customer: &str, salt: u64, base: u64, spread: u64) -> u64 {
    base + reading(customer, salt) % spread
}

pub fn first_bills(customer: &str, today: i64) -> Vec<Bill> {
    let (year, month, _) = clock::civil_from_days(today);
    let (last_year, last_month) = if month == 1 {
        (year - 1, 12)
    } else {
        (year, month - 1)
    };
    let this = format!("{} {year}", MONTHS[month as usize - 1]);
    let last = format!("{} {last_year}", MONTHS[last_month as usize - 1]);
    let quarter = (month - 1) / 3 + 1;
    let bill = |id: String, service: &str, period: String, amount: u64, due: i64| Bill {
        id,
        service: service.into(),
        period,
        amount,
        due,
        paid_by: None,
    };
    vec![
        bill(
            format!("el-{last_year}-{last_month:02}"),
            "Electricity",
            last,
            amount(customer, 1, 4_200, 2_500),
            today - 5,
        ),
        bill(
            format!("el-{year}-{month:02}"),
            "Electricity",
            this.clone(),
            amount(customer, 2, 4_200, 2_500),
            today + 12,
        ),
        bill(
            format!("wa-{year}-q{quarter}"),
            "Water",
            format!("Q{quarter} {year}"),
            amount(customer, 3, 2_800, 1_500),
            today + 20,
        ),
        bill(
            format!("in-{year}-{month:02}"),
            "Internet",
            this,
            2_999,
            today + 8,
        ),
        bill(
            format!("ws-{year}"),
            "Waste collection",
            year.to_string(),
            12_000,
            today + 30,
        ),
    ]
}
