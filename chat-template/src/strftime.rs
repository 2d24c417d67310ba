//! `strftime_now(format)`: Python's `datetime.now().strftime(format)` in the C locale.
//!
//! The clock is read as UTC (transformers reads the machine's local time; see COMPATIBILITY.md).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
    /// 0 = Sunday.
    weekday: u32,
    /// 0-based day of the year.
    yday: u32,
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
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

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

impl Civil {
    /// The UTC calendar fields of `t`.
    pub(crate) fn from_system_time(t: SystemTime) -> Self {
        let (secs, micros) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
            Err(e) => {
                let d = e.duration();
                let mut secs = -(d.as_secs() as i64);
                let mut micros = d.subsec_micros();
                if micros > 0 {
                    secs -= 1;
                    micros = 1_000_000 - micros;
                }
                (secs, micros)
            }
        };
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        // Days to civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yday =
            cumulative[(month - 1) as usize] + day - 1 + u32::from(month > 2 && is_leap(year));
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            micros,
            weekday: (days + 4).rem_euclid(7) as u32,
            yday,
        }
    }

    /// Week of the year with weeks starting on `first_weekday` (0 = Sunday), as `%U`/`%W`.
    fn week(&self, first_weekday: u32) -> u32 {
        let wd = (self.weekday + 7 - first_weekday) % 7;
        (self.yday + 7 - wd) / 7
    }

    /// Formats like C `strftime` in the C locale (plus Python's `%f`).
    pub(crate) fn strftime(&self, format: &str) -> String {
        let mut out = String::with_capacity(format.len() + 16);
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            // glibc's `-` flag drops the padding (`%-d`).
            let unpadded = chars.peek() == Some(&'-');
            if unpadded {
                chars.next();
            }
            let Some(spec) = chars.next() else {
                out.push('%');
                break;
            };
            let num = |out: &mut String, v: i64, width: usize, pad: char| {
                let s = v.to_string();
                if !unpadded {
                    for _ in s.len()..width {
                        out.push(pad);
                    }
                }
                out.push_str(&s);
            };
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            match spec {
                'a' => out.push_str(&DAYS[self.weekday as usize][..3]),
                'A' => out.push_str(DAYS[self.weekday as usize]),
                'b' | 'h' => out.push_str(&MONTHS[(self.month - 1) as usize][..3]),
                'B' => out.push_str(MONTHS[(self.month - 1) as usize]),
                'c' => out.push_str(&self.strftime("%a %b %e %H:%M:%S %Y")),
                'C' => num(&mut out, self.year / 100, 2, '0'),
                'd' => num(&mut out, self.day.into(), 2, '0'),
                'D' => out.push_str(&self.strftime("%m/%d/%y")),
                'e' => num(&mut out, self.day.into(), 2, ' '),
                'f' => {
                    let _ = write!(out, "{:06}", self.micros);
                }
                'F' => out.push_str(&self.strftime("%Y-%m-%d")),
                'H' => num(&mut out, self.hour.into(), 2, '0'),
                'I' => num(&mut out, hour12.into(), 2, '0'),
                'j' => num(&mut out, (self.yday + 1).into(), 3, '0'),
                'k' => num(&mut out, self.hour.into(), 2, ' '),
                'l' => num(&mut out, hour12.into(), 2, ' '),
                'm' => num(&mut out, self.month.into(), 2, '0'),
                'M' => num(&mut out, self.minute.into(), 2, '0'),
                'n' => out.push('\n'),
                'p' => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                'r' => out.push_str(&self.strftime("%I:%M:%S %p")),
                'R' => out.push_str(&self.strftime("%H:%M")),
                'S' => num(&mut out, self.second.into(), 2, '0'),
                't' => out.push('\t'),
                'T' | 'X' => out.push_str(&self.strftime("%H:%M:%S")),
                'u' => num(
                    &mut out,
                    (if self.weekday == 0 { 7 } else { self.weekday }).into(),
                    1,
                    '0',
                ),
                'U' => num(&mut out, self.week(0).into(), 2, '0'),
                'w' => num(&mut out, self.weekday.into(), 1, '0'),
                'W' => num(&mut out, self.week(1).into(), 2, '0'),
                'x' => out.push_str(&self.strftime("%m/%d/%y")),
                'y' => num(&mut out, self.year.rem_euclid(100), 2, '0'),
                'Y' => num(&mut out, self.year, 1, '0'),
                // A naive datetime has no zone: Python prints nothing.
                'z' | 'Z' => {}
                '%' => out.push('%'),
                other => {
                    out.push('%');
                    if unpadded {
                        out.push('-');
                    }
                    out.push(other);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> Civil {
        Civil::from_system_time(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn formats_like_python() {
        // 2026-01-15 09:05:03 UTC; expected strings are CPython 3.11's
        // datetime(2026, 1, 15, 9, 5, 3).strftime(...).
        let t = at(1_768_467_903);
        assert_eq!(t.strftime("%d %b %Y"), "15 Jan 2026");
        assert_eq!(t.strftime("%B %d, %Y"), "January 15, 2026");
        assert_eq!(t.strftime("%Y-%m-%d"), "2026-01-15");
        assert_eq!(
            t.strftime("%A %j %U %W %w %u %p %I %f"),
            "Thursday 015 02 02 4 4 AM 09 000000"
        );
        assert_eq!(
            t.strftime("%c|%x|%X|%-d|%e|%%"),
            "Thu Jan 15 09:05:03 2026|01/15/26|09:05:03|15|15|%"
        );
    }

    #[test]
    fn leap_years_and_year_days() {
        // 2024-03-01 00:00:00 UTC, day 61 of a leap year; 2000-12-31 is day 366.
        assert_eq!(
            at(1_709_251_200).strftime("%Y-%m-%d %j %a"),
            "2024-03-01 061 Fri"
        );
        assert_eq!(at(978_220_800).strftime("%Y-%m-%d %j"), "2000-12-31 366");
    }
}
