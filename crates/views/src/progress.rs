//! The five-step progress line La Poste draws above a parcel's history: announced, taken in
//! charge, in transit, out for delivery, delivered.
//!
//! Each event code belongs to one step, as La Poste's Suivi v2 documentation assigns them
//! (DR1 → 1; PC1, PC2 → 2; ET*, EP1, DO*, PB* → 3; MD2, ND1, AG1, RE1 → 4; DI1, DI2 → 5). A parcel
//! stands at the step of its latest event, with a tone that says whether all is well there
//! (Suivi v2's step `type`: 1 OK, 0 information, -1 KO): a problem, a failed delivery or a
//! return is KO, waiting at a pick-up point is information.

use rempart_domain::{EventCode, ParcelView, Status, Timestamp};

use crate::Lang;
use crate::wording::status_label;

/// One of the five steps, numbered 1 to 5 as in Suivi v2's `timeline[].id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Announced = 1,
    TakenInCharge = 2,
    InTransit = 3,
    OutForDelivery = 4,
    Delivered = 5,
}

/// How things stand at the current step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Ok,
    Info,
    Ko,
}

/// Where a parcel stands on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub step: Step,
    pub tone: Tone,
    pub status: Status,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::Announced,
        Step::TakenInCharge,
        Step::InTransit,
        Step::OutForDelivery,
        Step::Delivered,
    ];

    /// The step an event code belongs to.
    #[must_use]
    pub fn of(code: EventCode) -> Step {
        use EventCode::*;
        match code {
            Dr1 => Step::Announced,
            Pc1 | Pc2 => Step::TakenInCharge,
            Et1 | Et2 | Et3 | Et4 | Ep1 | Do1 | Do2 | Do3 | Pb1 | Pb2 => Step::InTransit,
            Md2 | Nd1 | Ag1 | Re1 => Step::OutForDelivery,
            Di1 | Di2 => Step::Delivered,
        }
    }

    /// 1 to 5.
    #[must_use]
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The step's name on the line: the name of the status the step stands for, except
    /// "taken in charge", which has no status of its own.
    #[must_use]
    pub fn label(self, lang: Lang) -> &'static str {
        let status = match self {
            Step::Announced => Status::InfoReceived,
            Step::TakenInCharge => {
                const TAKEN: [&str; 6] = [
                    "Pris en charge",
                    "Accepted",
                    "Angenommen",
                    "Admitido",
                    "Preso in carico",
                    "Ontvangen",
                ];
                return TAKEN[lang.index()];
            }
            Step::InTransit => Status::InTransit,
            Step::OutForDelivery => Status::OutForDelivery,
            Step::Delivered => Status::Delivered,
        };
        status_label(status, lang)
    }
}

impl Tone {
    /// The tone of a status at its step.
    #[must_use]
    pub fn of(status: Status) -> Tone {
        match status {
            Status::Exception | Status::AttemptFailed | Status::Returned => Tone::Ko,
            Status::AvailableForPickup => Tone::Info,
            Status::InfoReceived
            | Status::InTransit
            | Status::OutForDelivery
            | Status::Delivered => Tone::Ok,
        }
    }

    /// Suivi v2's step `type`: 1, 0 or -1.
    #[must_use]
    pub fn suivi_type(self) -> i8 {
        match self {
            Tone::Ok => 1,
            Tone::Info => 0,
            Tone::Ko => -1,
        }
    }
}

impl Progress {
    /// Where a parcel stands: the step and status of its latest event.
    #[must_use]
    pub fn of(view: &ParcelView) -> Progress {
        let step = view
            .events
            .first()
            .map_or(Step::Announced, |e| Step::of(e.code));
        Progress {
            step,
            tone: Tone::of(view.status),
            status: view.status,
        }
    }

    /// The label the line shows for `step`: its own name, except at the current step when
    /// something is not plain progress (a problem, a return, a pick-up point), where the status
    /// says what is going on ("Retourné à l’expéditeur" rather than "Livré" after DI2).
    #[must_use]
    pub fn label(&self, step: Step, lang: Lang) -> &'static str {
        if step == self.step && self.tone != Tone::Ok {
            status_label(self.status, lang)
        } else {
            step.label(lang)
        }
    }
}

/// The first time each step was reached, among the events a view holds (the oldest event of that
/// step); `None` for steps not reached or skipped (an international parcel has no DR1).
#[must_use]
pub fn step_dates(view: &ParcelView) -> [Option<Timestamp>; 5] {
    let mut dates = [None; 5];
    // Events are newest first: the last one seen for a step is its oldest.
    for e in &view.events {
        dates[usize::from(Step::of(e.code).number()) - 1] = Some(e.occurred_at);
    }
    dates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::view;

    #[test]
    fn codes_fall_on_la_postes_steps() {
        let expected = [
            ("DR1", 1),
            ("PC1", 2),
            ("PC2", 2),
            ("ET1", 3),
            ("ET2", 3),
            ("ET3", 3),
            ("ET4", 3),
            ("EP1", 3),
            ("DO1", 3),
            ("DO2", 3),
            ("DO3", 3),
            ("PB1", 3),
            ("PB2", 3),
            ("MD2", 4),
            ("ND1", 4),
            ("AG1", 4),
            ("RE1", 4),
            ("DI1", 5),
            ("DI2", 5),
        ];
        assert_eq!(expected.len(), EventCode::ALL.len());
        for (code, step) in expected {
            assert_eq!(
                Step::of(EventCode::parse(code).unwrap()).number(),
                step,
                "{code}"
            );
        }
    }

    #[test]
    fn the_latest_event_sets_the_step_and_its_status_the_tone() {
        let cases = [
            (&["DR1"][..], Step::Announced, Tone::Ok),
            (&["DR1", "PC1", "ET1"], Step::InTransit, Tone::Ok),
            (&["PC1", "ET1", "PB1"], Step::InTransit, Tone::Ko),
            (&["PC2", "DO1", "DO3"], Step::InTransit, Tone::Ko),
            (&["PC1", "MD2", "ND1"], Step::OutForDelivery, Tone::Ko),
            (
                &["PC1", "MD2", "ND1", "AG1"],
                Step::OutForDelivery,
                Tone::Info,
            ),
            (&["PC1", "MD2", "DI1"], Step::Delivered, Tone::Ok),
            (&["PC1", "ND1", "RE1", "DI2"], Step::Delivered, Tone::Ko),
        ];
        for (codes, step, tone) in cases {
            let p = Progress::of(&view(codes));
            assert_eq!((p.step, p.tone), (step, tone), "{codes:?}");
        }
    }

    #[test]
    fn a_return_is_never_labelled_delivered() {
        let p = Progress::of(&view(&["PC1", "ND1", "RE1", "DI2"]));
        assert_eq!(
            p.label(Step::Delivered, Lang::Fr),
            "Retourné à l’expéditeur"
        );
        assert_eq!(
            p.label(Step::InTransit, Lang::Fr),
            "En cours d’acheminement"
        );
        let p = Progress::of(&view(&["PC1", "MD2", "DI1"]));
        assert_eq!(p.label(Step::Delivered, Lang::En), "Delivered");
    }

    #[test]
    fn step_dates_are_the_first_event_of_each_step() {
        let v = view(&["PC1", "ET1", "ET1", "MD2"]);
        let dates = step_dates(&v);
        assert_eq!(dates[0], None);
        let oldest_et1 = v
            .events
            .iter()
            .rev()
            .find(|e| e.code == EventCode::Et1)
            .unwrap();
        assert_eq!(dates[2], Some(oldest_et1.occurred_at));
        assert!(dates[1] < dates[2] && dates[2] < dates[3]);
        assert_eq!(dates[4], None);
    }

    #[test]
    fn every_step_has_a_name_in_every_language() {
        for lang in Lang::ALL {
            let names: std::collections::HashSet<_> =
                Step::ALL.iter().map(|s| s.label(lang)).collect();
            assert_eq!(names.len(), 5);
        }
    }
}
