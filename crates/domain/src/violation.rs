//! Field violations: which field of a request breaks which rule.

use std::fmt;

/// One invalid field: its path (e.g. `report.location.point.latitude`) and
/// the rule it breaks, in words a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Dotted path from the request root; repeated fields carry `[index]`.
    pub field: String,
    /// The rule, e.g. "must be between -90 and 90".
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// A field's path, named when a violation needs it: a `&str` or `String`,
/// or a closure that builds the path, so that checking a valid request
/// formats no paths at all.
pub trait FieldPath {
    /// The dotted path.
    fn into_path(self) -> String;
}

impl FieldPath for &str {
    fn into_path(self) -> String {
        self.to_owned()
    }
}

impl FieldPath for String {
    fn into_path(self) -> String {
        self
    }
}

impl<F: FnOnce() -> String> FieldPath for F {
    fn into_path(self) -> String {
        self()
    }
}

/// Collects every violation of a request, so the caller learns all of them
/// at once rather than one per round trip.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records that `field` breaks `rule`.
    pub fn add(&mut self, field: impl FieldPath, rule: impl Into<String>) {
        self.0.push(FieldViolation::new(field.into_path(), rule));
    }

    /// Keeps the value of `result`, or records its error against `field`.
    pub fn check<T>(&mut self, field: impl FieldPath, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(rule) => {
                self.add(field, rule);
                None
            }
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else every violation.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Vec<FieldViolation>> {
        if self.0.is_empty() { Ok(value()) } else { Err(self.0) }
    }

    /// The violations recorded so far.
    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }
}
