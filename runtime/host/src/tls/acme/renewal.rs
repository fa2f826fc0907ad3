//! When an ACME certificate is ordered again: once less than a third of its lifetime is
//! left (Let's Encrypt's 90 days: at 30 days left; a test CA's one-minute certificate: at
//! 20 seconds left), so a failing renewal has a third of the lifetime to be retried.

use chrono::{DateTime, Utc};

/// When a certificate valid until `not_after`, whose chain is `chain_pem`, is due for
/// renewal; `None` when its leaf cannot be read (order a new one at once).
pub fn renewal_due(chain_pem: &str, not_after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let not_before = not_before(chain_pem)?;
    let lifetime = not_after.signed_duration_since(not_before);
    if lifetime <= chrono::TimeDelta::zero() {
        return None;
    }
    Some(not_after - lifetime / 3)
}

/// The leaf's (the chain's first certificate's) start of validity.
fn not_before(chain_pem: &str) -> Option<DateTime<Utc>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes()).ok()?;
    let leaf = pem.parse_x509().ok()?;
    DateTime::from_timestamp(leaf.validity().not_before.timestamp(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    /// A certificate valid from midnight (UTC) of `from` to midnight of `to`.
    fn certificate(from: (i32, u8, u8), to: (i32, u8, u8)) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["www.example.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        params.self_signed(&key).unwrap().pem()
    }

    fn midnight(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap()
            .and_utc()
    }

    #[test]
    fn due_when_a_third_of_the_lifetime_is_left() {
        // Let's Encrypt's 90 days: due with 30 left.
        let end = midnight(2030, 4, 1);
        let due = renewal_due(&certificate((2030, 1, 1), (2030, 4, 1)), end);
        assert_eq!(due, Some(end - TimeDelta::days(30)));
        let end = midnight(2030, 1, 4);
        let due = renewal_due(&certificate((2030, 1, 1), (2030, 1, 4)), end);
        assert_eq!(due, Some(midnight(2030, 1, 3)));
        assert_eq!(renewal_due("not a certificate", end), None);
    }
}
