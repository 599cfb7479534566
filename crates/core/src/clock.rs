//! Times for people (the pages, audit events): Unix seconds shown and read as UTC calendar times (`2026-12-01 03:04`),
//! which is what the `datetime-local` inputs send. UTC throughout: a plant's operators work
//! across time zones, and the audit log's times must read the same to all of them.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day since 1970-01-01 (`civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-12-01 03:04:05 UTC`.
pub fn utc(unix: i64) -> String {
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    let secs = unix.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `2026-12-01T03:04:05Z` (RFC 3339), for files.
pub fn rfc3339(unix: i64) -> String {
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    let secs = unix.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The value of a `datetime-local` input for a time: `2026-12-01T03:04`.
pub fn input_value(unix: i64) -> String {
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    let secs = unix.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}", secs / 3600, secs / 60 % 60)
}

/// Reads a `datetime-local` value (`YYYY-MM-DDTHH:MM`, optionally `:SS`) as UTC; `None` when it
/// is not one.
pub fn parse_input(value: &str) -> Option<i64> {
    let (date, time) = value.trim().split_once(['T', ' '])?;
    let mut date = date.splitn(3, '-');
    let year: i64 = date.next()?.parse().ok()?;
    let month: i64 = date.next()?.parse().ok()?;
    let day: i64 = date.next()?.parse().ok()?;
    let mut time = time.splitn(3, ':');
    let hour: i64 = time.next()?.parse().ok()?;
    let minute: i64 = time.next()?.parse().ok()?;
    let second: i64 = match time.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    let valid = (1970..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..60).contains(&second);
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // 31 February is not a day: it must come back as the date it was written.
    (civil_from_days(days) == (year, month, day)).then_some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// How long ago, roughly: `just now`, `5 min ago`, `3 h ago`, `12 days ago`.
pub fn ago(unix: i64, now: i64) -> String {
    let secs = now - unix;
    match secs {
        i64::MIN..60 => "just now".to_owned(),
        60..7200 => format!("{} min ago", secs / 60),
        7200..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// How long until, roughly: `in 5 min`, `in 3 h`, `in 12 days` (`now` when it is due).
pub fn until(unix: i64, now: i64) -> String {
    let secs = unix - now;
    match secs {
        i64::MIN..60 => "now".to_owned(),
        60..7200 => format!("in {} min", secs / 60),
        7200..172_800 => format!("in {} h", secs / 3600),
        _ => format!("in {} days", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_times_round_trip() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_094_245), "2026-12-01 03:04:05 UTC");
        assert_eq!(rfc3339(1_796_094_245), "2026-12-01T03:04:05Z");
        assert_eq!(input_value(1_796_094_245), "2026-12-01T03:04");
        assert_eq!(parse_input("2026-12-01T03:04"), Some(1_796_094_240));
        assert_eq!(parse_input("2026-12-01T03:04:05"), Some(1_796_094_245));
        for unix in [0, 951_782_400, 1_796_094_240, 4_102_444_800 - 60] {
            assert_eq!(parse_input(&input_value(unix)), Some(unix), "{unix}");
        }
        for bad in ["", "yesterday", "2026-02-30T00:00", "2026-13-01T00:00", "2026-12-01T24:00", "1969-12-31T23:59"] {
            assert_eq!(parse_input(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_read_roughly() {
        assert_eq!(ago(100, 130), "just now");
        assert_eq!(ago(0, 600), "10 min ago");
        assert_eq!(ago(0, 3 * 3600), "3 h ago");
        assert_eq!(ago(0, 5 * 86_400), "5 days ago");
        assert_eq!(until(600, 0), "in 10 min");
        assert_eq!(until(0, 10), "now");
    }
}
