//! How the CLI shows a moment: as Heroku's CLI does, the time on the reader's clock and
//! how long ago it was (`2026/11/28 04:19:29 +0000 (~ 3m ago)`), so nobody has to work
//! out whether a dyno started a minute or a day ago from a nanosecond timestamp.
//! `--json` keeps the API's RFC 3339 times for scripts.

use chrono::{DateTime, Local, Utc};

/// `at` in the local time zone with its offset, and how far it is from now.
pub fn moment(at: DateTime<Utc>) -> String {
    moment_at(at, Utc::now())
}

/// The time of day alone, with its distance from now: for deadlines that are seconds
/// away (a crashed dyno's next start).
pub fn soon(at: DateTime<Utc>) -> String {
    let now = Utc::now();
    format!(
        "{} ({})",
        at.with_timezone(&Local).format("%H:%M:%S"),
        distance(at, now)
    )
}

fn moment_at(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "{} ({})",
        at.with_timezone(&Local).format("%Y/%m/%d %H:%M:%S %z"),
        distance(at, now)
    )
}

/// `~ 5m ago`, or `in ~ 5m` for a moment still to come; `just now` within a second.
fn distance(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let span = |s: i64| match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..172_800 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    };
    match seconds {
        0 => "just now".to_string(),
        s if s > 0 => format!("~ {} ago", span(s)),
        s => format!("in ~ {}", span(-s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T04:19:29Z")
            .expect("a valid time")
            .to_utc()
    }

    #[test]
    fn distances_read_like_herokus() {
        let cases = [
            (0, "just now"),
            (3, "~ 3s ago"),
            (59, "~ 59s ago"),
            (60, "~ 1m ago"),
            (3_599, "~ 59m ago"),
            (3_600, "~ 1h ago"),
            (47 * 3_600, "~ 47h ago"),
            (3 * 86_400 + 5, "~ 3d ago"),
            (-4, "in ~ 4s"),
            (-120, "in ~ 2m"),
        ];
        for (ago, shown) in cases {
            let at = now() - TimeDelta::seconds(ago);
            assert_eq!(distance(at, now()), shown, "{ago}s before now");
        }
    }

    #[test]
    fn a_moment_shows_the_date_the_offset_and_the_distance() {
        let shown = moment_at(now() - TimeDelta::minutes(3), now());
        let local = (now() - TimeDelta::minutes(3)).with_timezone(&Local);
        let expected = format!("{} (~ 3m ago)", local.format("%Y/%m/%d %H:%M:%S %z"));
        assert_eq!(shown, expected);
        assert!(shown.contains('/') && !shown.contains('T'), "{shown}");
    }
}
