//! Placeholder: filled in by the scale-out issue.
