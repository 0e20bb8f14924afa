//! Europe/Paris local time without a time-zone database, and dates written as La Poste writes
//! them ("lundi 22 décembre, 07:02").
//!
//! France has followed the EU summer-time rule since 1996: CEST (UTC+2) from the last Sunday of
//! March at 01:00 UTC to the last Sunday of October at 01:00 UTC, CET (UTC+1) otherwise. Events
//! are dated from 2000 on (the ingest rule), so that one rule is the whole story; should the EU
//! ever drop the switch, this file is the one place to change.

use rempart_domain::Timestamp;
use time::{Date, Month, OffsetDateTime, UtcOffset, Weekday};

use crate::Lang;

const HOUR_S: i64 = 3600;

/// The UTC offset of Paris, in seconds, at a UTC instant (seconds since the Unix epoch).
#[must_use]
pub fn offset_s(unix_s: i64) -> i32 {
    let Ok(utc) = OffsetDateTime::from_unix_timestamp(unix_s) else {
        return 3600;
    };
    let year = utc.year();
    let start = last_sunday_01_utc(year, Month::March);
    let end = last_sunday_01_utc(year, Month::October);
    if (start..end).contains(&unix_s) {
        7200
    } else {
        3600
    }
}

/// The instant of 01:00 UTC on the last Sunday of `month` (March or October: both have 31 days).
fn last_sunday_01_utc(year: i32, month: Month) -> i64 {
    let Ok(last_day) = Date::from_calendar_date(year, month, 31) else {
        return i64::MIN;
    };
    let back = i64::from(last_day.weekday().number_days_from_sunday());
    let sunday = last_day.midnight().assume_utc().unix_timestamp() - back * 24 * HOUR_S;
    sunday + HOUR_S
}

/// A UTC instant in Paris local time, with its offset.
#[must_use]
pub fn local(t: Timestamp) -> OffsetDateTime {
    let secs = t.0.div_euclid(1_000_000);
    let utc = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let offset = UtcOffset::from_whole_seconds(offset_s(secs)).unwrap_or(UtcOffset::UTC);
    utc.to_offset(offset)
}

/// RFC 3339 in Paris local time to the second, as La Poste's Suivi v2 writes dates:
/// `2025-12-22T07:02:11+01:00`.
#[must_use]
pub fn rfc3339_local(t: Timestamp) -> String {
    let l = local(t);
    let offset_h = l.offset().whole_hours();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+{:02}:00",
        l.year(),
        u8::from(l.month()),
        l.day(),
        l.hour(),
        l.minute(),
        l.second(),
        offset_h
    )
}

/// A date as a customer reads it on La Poste's site, in Paris time: "lundi 22 décembre, 07:02",
/// "Monday 22 December, 07:02", "Montag, 22. Dezember, 07:02"… The year appears when it is not
/// the year of `now` (the caller's clock), as La Poste does for old events.
#[must_use]
pub fn human(t: Timestamp, lang: Lang, now: Timestamp) -> String {
    let l = local(t);
    let weekday = weekday_name(l.weekday(), lang);
    let month = month_name(l.month(), lang);
    let day = l.day();
    let year = if l.year() == local(now).year() {
        String::new()
    } else {
        format!(" {}", l.year())
    };
    let time = format!("{:02}:{:02}", l.hour(), l.minute());
    match lang {
        Lang::Fr | Lang::En | Lang::It | Lang::Nl => {
            format!("{weekday} {day} {month}{year}, {time}")
        }
        Lang::De => format!("{weekday}, {day}. {month}{year}, {time}"),
        Lang::Es => format!(
            "{weekday} {day} de {month}{year_es}, {time}",
            year_es = year.replace(' ', " de ")
        ),
    }
}

fn weekday_name(day: Weekday, lang: Lang) -> &'static str {
    const NAMES: [[&str; 7]; 6] = [
        [
            "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
        ],
        [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ],
        [
            "Montag",
            "Dienstag",
            "Mittwoch",
            "Donnerstag",
            "Freitag",
            "Samstag",
            "Sonntag",
        ],
        [
            "lunes",
            "martes",
            "miércoles",
            "jueves",
            "viernes",
            "sábado",
            "domingo",
        ],
        [
            "lunedì",
            "martedì",
            "mercoledì",
            "giovedì",
            "venerdì",
            "sabato",
            "domenica",
        ],
        [
            "maandag",
            "dinsdag",
            "woensdag",
            "donderdag",
            "vrijdag",
            "zaterdag",
            "zondag",
        ],
    ];
    NAMES[lang.index()][usize::from(day.number_days_from_monday())]
}

fn month_name(month: Month, lang: Lang) -> &'static str {
    const NAMES: [[&str; 12]; 6] = [
        [
            "janvier",
            "février",
            "mars",
            "avril",
            "mai",
            "juin",
            "juillet",
            "août",
            "septembre",
            "octobre",
            "novembre",
            "décembre",
        ],
        [
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
        ],
        [
            "Januar",
            "Februar",
            "März",
            "April",
            "Mai",
            "Juni",
            "Juli",
            "August",
            "September",
            "Oktober",
            "November",
            "Dezember",
        ],
        [
            "enero",
            "febrero",
            "marzo",
            "abril",
            "mayo",
            "junio",
            "julio",
            "agosto",
            "septiembre",
            "octubre",
            "noviembre",
            "diciembre",
        ],
        [
            "gennaio",
            "febbraio",
            "marzo",
            "aprile",
            "maggio",
            "giugno",
            "luglio",
            "agosto",
            "settembre",
            "ottobre",
            "novembre",
            "dicembre",
        ],
        [
            "januari",
            "februari",
            "maart",
            "april",
            "mei",
            "juni",
            "juli",
            "augustus",
            "september",
            "oktober",
            "november",
            "december",
        ],
    ];
    NAMES[lang.index()][usize::from(u8::from(month)) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp::parse_rfc3339(rfc3339).unwrap()
    }

    fn offset_at(rfc3339: &str) -> i32 {
        offset_s(at(rfc3339).0 / 1_000_000)
    }

    #[test]
    fn the_spring_switch_is_at_01_utc_on_the_last_sunday_of_march() {
        // 2025: Sunday 30 March. 2026: Sunday 29 March. 2024: Sunday 31 March (the 31st itself).
        for (before, after) in [
            ("2025-03-30T00:59:59Z", "2025-03-30T01:00:00Z"),
            ("2026-03-29T00:59:59Z", "2026-03-29T01:00:00Z"),
            ("2024-03-31T00:59:59Z", "2024-03-31T01:00:00Z"),
        ] {
            assert_eq!(offset_at(before), 3600, "{before}");
            assert_eq!(offset_at(after), 7200, "{after}");
        }
        // Local clocks jump from 01:59:59 to 03:00:00.
        assert_eq!(
            rfc3339_local(at("2025-03-30T00:59:59Z")),
            "2025-03-30T01:59:59+01:00"
        );
        assert_eq!(
            rfc3339_local(at("2025-03-30T01:00:00Z")),
            "2025-03-30T03:00:00+02:00"
        );
        // A week earlier is still winter.
        assert_eq!(offset_at("2025-03-23T12:00:00Z"), 3600);
    }

    #[test]
    fn the_autumn_switch_is_at_01_utc_on_the_last_sunday_of_october() {
        // 2025: Sunday 26 October. 2026: Sunday 25 October. 2020: Sunday 25 October.
        for (before, after) in [
            ("2025-10-26T00:59:59Z", "2025-10-26T01:00:00Z"),
            ("2026-10-25T00:59:59Z", "2026-10-25T01:00:00Z"),
            ("2020-10-25T00:59:59Z", "2020-10-25T01:00:00Z"),
        ] {
            assert_eq!(offset_at(before), 7200, "{before}");
            assert_eq!(offset_at(after), 3600, "{after}");
        }
        // Local 02:00–02:59 happens twice; both are told apart by their offset.
        assert_eq!(
            rfc3339_local(at("2025-10-26T00:30:00Z")),
            "2025-10-26T02:30:00+02:00"
        );
        assert_eq!(
            rfc3339_local(at("2025-10-26T01:30:00Z")),
            "2025-10-26T02:30:00+01:00"
        );
        // The Sunday before is still summer.
        assert_eq!(offset_at("2025-10-19T12:00:00Z"), 7200);
    }

    #[test]
    fn dates_read_as_la_poste_writes_them() {
        let t = at("2025-12-22T06:02:11Z");
        let now = at("2025-12-23T10:00:00Z");
        let cases = [
            (Lang::Fr, "lundi 22 décembre, 07:02"),
            (Lang::En, "Monday 22 December, 07:02"),
            (Lang::De, "Montag, 22. Dezember, 07:02"),
            (Lang::Es, "lunes 22 de diciembre, 07:02"),
            (Lang::It, "lunedì 22 dicembre, 07:02"),
            (Lang::Nl, "maandag 22 december, 07:02"),
        ];
        for (lang, expected) in cases {
            assert_eq!(human(t, lang, now), expected);
        }
        // Summer time, and a day that changes with the offset: 22:30 UTC is past midnight in Paris.
        let summer = at("2025-07-13T22:30:00Z");
        assert_eq!(human(summer, Lang::Fr, now), "lundi 14 juillet, 00:30");
        assert_eq!(rfc3339_local(summer), "2025-07-14T00:30:00+02:00");
    }

    #[test]
    fn another_year_is_written_out() {
        let t = at("2024-12-31T22:59:00Z");
        let now = at("2025-01-02T10:00:00Z");
        assert_eq!(human(t, Lang::Fr, now), "mardi 31 décembre 2024, 23:59");
        assert_eq!(
            human(t, Lang::De, now),
            "Dienstag, 31. Dezember 2024, 23:59"
        );
        assert_eq!(
            human(t, Lang::Es, now),
            "martes 31 de diciembre de 2024, 23:59"
        );
        assert_eq!(human(t, Lang::En, now), "Tuesday 31 December 2024, 23:59");
        // 23:30 UTC on 31 December is already next year in Paris: same year as now, no year.
        assert_eq!(
            human(at("2024-12-31T23:30:00Z"), Lang::Fr, now),
            "mercredi 1 janvier, 00:30"
        );
    }

    proptest! {
        /// Between 2000 and 2100 the offset is +1 or +2, +2 exactly between the two switches, and
        /// the local wall clock never goes backwards except by one hour at the autumn switch.
        #[test]
        fn offsets_follow_the_eu_rule(secs in 946_684_800i64..4_102_444_800) {
            let offset = offset_s(secs);
            let utc = OffsetDateTime::from_unix_timestamp(secs).unwrap();
            let (m, d, h) = (u8::from(utc.month()), utc.day(), utc.hour());
            let surely_winter = m <= 2 || m >= 11 || (m == 3 && d < 25) || (m == 10 && d > 31);
            let surely_summer = (4..=9).contains(&m) || (m == 3 && d == 31 && h >= 1 && utc.weekday() == Weekday::Sunday);
            prop_assert!(offset == 3600 || offset == 7200);
            if surely_winter { prop_assert_eq!(offset, 3600); }
            if surely_summer { prop_assert_eq!(offset, 7200); }
            let local = local(Timestamp(secs * 1_000_000));
            prop_assert_eq!(local.unix_timestamp(), secs);
        }
    }
}
