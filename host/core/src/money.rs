//! Amounts as people read them. The ledger counts integer minor units, and
//! every currency it holds has two decimals.

/// `45.84`, `-0.50`: `minor` units as a decimal amount.
pub fn amount(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// `EUR 45.84`.
pub fn format(minor: i64, currency: &str) -> String {
    format!("{currency} {}", amount(minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_decimals_with_the_sign_kept_below_one_unit() {
        assert_eq!(format(4584, "EUR"), "EUR 45.84");
        assert_eq!(amount(5), "0.05");
        assert_eq!(amount(-50), "-0.50");
        assert_eq!(amount(-12_345), "-123.45");
        assert_eq!(amount(i64::MIN), "-92233720368547758.08");
    }
}
