//! Closed sets of metric labels: each enum and its labels written once ([`labelled!`]), so a
//! label cannot drift from its variant and the number of series stays bounded.

/// Defines a fieldless enum whose variants each carry a label, with `ALL`, `COUNT`, `index()`
/// and `label()`.
macro_rules! labelled {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $label:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub const COUNT: usize = Self::ALL.len();

            /// Position in [`Self::ALL`], for arrays of counters.
            pub fn index(self) -> usize {
                self as usize
            }

            /// The label in metrics and logs.
            pub fn label(self) -> &'static str {
                match self {
                    $( $name::$variant => $label, )*
                }
            }
        }
    };
}

pub(crate) use labelled;
