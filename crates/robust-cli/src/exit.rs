//! Exit-code conventions of the `robust` binary.
//!
//! * `0`: success (and every gate held);
//! * `1`: a gate failed (regression, tampered model, drift found) or an internal failure;
//! * `2`: bad input or usage: a missing file, a malformed model, an invalid flag value.
//!
//! A command reports bad input by returning an error built with [`bad_input`]; `main`
//! finds it with `downcast_ref::<BadInput>()` and exits with code 2, printing one line.

use std::fmt;

/// An error caused by the user's input (files, flags, configuration): exit code 2.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Wraps any displayable error as a [`BadInput`] (exit code 2).
pub fn bad_input(e: impl fmt::Display) -> anyhow::Error {
    anyhow::Error::new(BadInput(e.to_string()))
}
