//! Scan event codes and the normalized statuses they map to (docs/api.md, "Event codes").

use std::fmt;

/// A parcel's normalized status, as shown to customers. Serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InfoReceived,
    InTransit,
    OutForDelivery,
    AttemptFailed,
    AvailableForPickup,
    Delivered,
    Returned,
    Exception,
}

impl Status {
    /// The snake_case name used in JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InfoReceived => "info_received",
            Status::InTransit => "in_transit",
            Status::OutForDelivery => "out_for_delivery",
            Status::AttemptFailed => "attempt_failed",
            Status::AvailableForPickup => "available_for_pickup",
            Status::Delivered => "delivered",
            Status::Returned => "returned",
            Status::Exception => "exception",
        }
    }

    /// A short human label for pages.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Status::InfoReceived => "Announced",
            Status::InTransit => "In transit",
            Status::OutForDelivery => "Out for delivery",
            Status::AttemptFailed => "Delivery attempt failed",
            Status::AvailableForPickup => "Available for pick-up",
            Status::Delivered => "Delivered",
            Status::Returned => "Returned",
            Status::Exception => "Problem",
        }
    }
}

macro_rules! event_codes {
    ($($variant:ident => $text:literal, $status:ident, $label:literal;)*) => {
        /// A scan event code from La Poste's public tracking vocabulary.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventCode { $($variant,)* }

        impl EventCode {
            /// Every known code, in the order of the vocabulary table.
            pub const ALL: &'static [EventCode] = &[$(EventCode::$variant,)*];

            /// Parses a code such as `"PC1"`; exact, upper-case. Unknown codes are `None`.
            #[must_use]
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(EventCode::$variant),)*
                    _ => None,
                }
            }

            /// The three-character code, e.g. `"PC1"`.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $(EventCode::$variant => $text,)* }
            }

            /// The normalized status this code maps to.
            #[must_use]
            pub fn status(self) -> Status {
                match self { $(EventCode::$variant => Status::$status,)* }
            }

            /// A short English label for the event, e.g. "Being processed".
            #[must_use]
            pub fn label(self) -> &'static str {
                match self { $(EventCode::$variant => $label,)* }
            }
        }
    };
}

event_codes! {
    Dr1 => "DR1", InfoReceived, "Shipment announced by the sender";
    Pc1 => "PC1", InTransit, "Accepted by the carrier";
    Pc2 => "PC2", InTransit, "Accepted in the country of origin";
    Et1 => "ET1", InTransit, "Being processed";
    Et2 => "ET2", InTransit, "Being processed in the country of origin";
    Et3 => "ET3", InTransit, "Being processed in the destination country";
    Et4 => "ET4", InTransit, "Being processed in a transit country";
    Ep1 => "EP1", InTransit, "Waiting to be presented";
    Do1 => "DO1", InTransit, "Entered customs";
    Do2 => "DO2", InTransit, "Left customs";
    Do3 => "DO3", Exception, "Held by customs";
    Pb1 => "PB1", Exception, "Problem under way";
    Pb2 => "PB2", InTransit, "Problem solved";
    Md2 => "MD2", OutForDelivery, "Out for delivery";
    Nd1 => "ND1", AttemptFailed, "Could not be delivered";
    Ag1 => "AG1", AvailableForPickup, "Waiting at a pick-up point";
    Re1 => "RE1", Returned, "Returned to the sender";
    Di1 => "DI1", Delivered, "Delivered";
    Di2 => "DI2", Returned, "Delivered back to the sender";
}

impl EventCode {
    /// Whether a parcel is final after this event (DI1, DI2).
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, EventCode::Di1 | EventCode::Di2)
    }
}

impl fmt::Display for EventCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_matches_the_spec_table() {
        assert_eq!(EventCode::ALL.len(), 19);
        for &code in EventCode::ALL {
            assert_eq!(EventCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(
            EventCode::parse("DR1").unwrap().status(),
            Status::InfoReceived
        );
        assert_eq!(EventCode::parse("DO3").unwrap().status(), Status::Exception);
        assert_eq!(EventCode::parse("PB2").unwrap().status(), Status::InTransit);
        assert_eq!(
            EventCode::parse("ND1").unwrap().status(),
            Status::AttemptFailed
        );
        assert_eq!(
            EventCode::parse("AG1").unwrap().status(),
            Status::AvailableForPickup
        );
        assert_eq!(EventCode::parse("DI2").unwrap().status(), Status::Returned);
        assert!(EventCode::Di1.is_final() && EventCode::Di2.is_final());
        assert!(!EventCode::Re1.is_final());
    }

    #[test]
    fn unknown_and_lower_case_codes_are_refused() {
        for bad in ["", "pc1", "PC3", "XX1", "PC1 ", "DI"] {
            assert_eq!(EventCode::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn status_names_are_snake_case() {
        assert_eq!(
            serde_json::to_string(&Status::OutForDelivery).unwrap(),
            "\"out_for_delivery\""
        );
        assert_eq!(Status::AvailableForPickup.as_str(), "available_for_pickup");
    }
}
