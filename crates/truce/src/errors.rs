//! How the command line reports a failure: one line on stderr, every cause
//! once, and a non-zero exit.

use std::process::ExitCode;

/// Runs `main`, printing its error, if any, as `error: ...` on one line.
pub fn exit_code(main: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// `error` and its causes joined by ": ", leaving out a cause whose text
/// the line already holds (many errors repeat their cause in their own
/// message and also give it as their source).
pub(crate) fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("opening the log: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "nope holds no log");
        let repeated = anyhow::Error::new(Repeats(io())).context("verifying");
        assert_eq!(one_line(&repeated), "verifying: opening the log: nope holds no log");
        let chained = anyhow::Error::new(io()).context("reading nope");
        assert_eq!(one_line(&chained), "reading nope: nope holds no log");
    }
}
