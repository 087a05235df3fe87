//! Calendar dates of unix times, proleptic Gregorian, UTC: the one place
//! that converts between days since the epoch and (year, month, day)
//! (Howard Hinnant's algorithms, both directions). Used for the dated names
//! of uploads, backups and folders and for EXIF capture times.
//!
//! Imports nothing from the crate: every layer may use it.

/// (year, month 1–12, day 1–31) of a count of days since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

/// Days since 1970-01-01 of a valid (year, month, day); the inverse of
/// [`civil_from_days`].
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Shift the year to start in March so the leap day is the last day of
    // the "year".
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` (UTC) of a unix time.
pub fn civil_date(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Seconds since the unix epoch of a proleptic-Gregorian UTC date-time, or
/// `None` for an impossible one (month 13, `0000:00:00 00:00:00`, …).
pub(crate) fn unix_from_civil(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<i64> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=9999).contains(&year)
        || !(1..=month_days).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
        assert_eq!(civil_date(1_700_000_000), "2023-11-14");
        assert_eq!(civil_date(-86_400), "1969-12-31");
        assert_eq!(civil_date(-1), "1969-12-31");
        // 2100 is not a leap year, 2400 is.
        assert_eq!(civil_date(4_107_542_400), "2100-03-01");
        assert_eq!(civil_date(13_574_563_200), "2400-02-29");
    }

    #[test]
    fn civil_dates_convert_to_unix_seconds() {
        assert_eq!(unix_from_civil(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(unix_from_civil(2000, 2, 29, 0, 0, 0), Some(951_782_400));
        assert_eq!(
            unix_from_civil(2021, 6, 15, 12, 34, 56),
            Some(1_623_760_496)
        );
        assert_eq!(unix_from_civil(1969, 12, 31, 23, 59, 59), Some(-1));
        assert_eq!(unix_from_civil(2021, 2, 29, 0, 0, 0), None);
        assert_eq!(unix_from_civil(2100, 2, 29, 0, 0, 0), None);
        assert_eq!(unix_from_civil(0, 0, 0, 0, 0, 0), None);
        assert_eq!(unix_from_civil(2021, 13, 1, 0, 0, 0), None);
    }

    #[test]
    fn both_directions_agree_day_by_day() {
        // Every day from 1600-01-01 to 2500-12-31: the dates follow one
        // another (day+1, or the 1st of the next month/year) and convert back.
        let (first, last) = (days_from_civil(1600, 1, 1), days_from_civil(2500, 12, 31));
        let mut prev = civil_from_days(first - 1);
        assert_eq!(prev, (1599, 12, 31));
        for days in first..=last {
            let (y, m, d) = civil_from_days(days);
            let next_day = (prev.0, prev.1, prev.2 + 1);
            let next_month = (prev.0, prev.1 + 1, 1);
            let next_year = (prev.0 + 1, 1, 1);
            assert!(
                (y, m, d) == next_day || (y, m, d) == next_month || (y, m, d) == next_year,
                "{prev:?} -> {:?}",
                (y, m, d)
            );
            assert_eq!(days_from_civil(y, m, d), days);
            assert_eq!(unix_from_civil(y, m, d, 0, 0, 0), Some(days * 86_400));
            prev = (y, m, d);
        }
    }
}
