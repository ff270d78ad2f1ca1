//! The `truce` command: [`up`] runs the ingest and query services in one
//! process on the embedded log, the query side reading the log directly
//! (no network hop); `demo` loads the incidents of the source article
//! through the public API. [`cli`] parses the command line.

pub mod cli;
mod demo;
pub mod errors;
pub mod up;
mod verify;
