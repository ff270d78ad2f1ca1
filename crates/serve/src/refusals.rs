//! Refused calls in the server log, so an operator can see who was turned
//! away, how and why: one line per refusal naming the method, the
//! principal (when the caller authenticated), the peer address, the code
//! and the reason. Rate-limited: at most [`LINES_PER_SECOND`] such lines
//! in any one-second window, then a line counting those left out, so a
//! flood of refused calls cannot flood the log. Callers who authenticated
//! and anonymous ones have budgets of their own, so a flood of forged
//! tokens cannot hide what a principal was refused.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;
use tonic::Code;

/// Refusal lines logged at most per window.
pub const LINES_PER_SECOND: u32 = 10;

const WINDOW: Duration = Duration::from_secs(1);

/// Longest reason or method logged, in characters: both may carry what a
/// client sent.
const MAX_TEXT: usize = 160;

/// True for the codes that turn a caller away: no or unknown credentials,
/// a call its roles do not allow, a rate limit or a cap.
pub fn is_refusal(code: Code) -> bool {
    matches!(
        code,
        Code::Unauthenticated | Code::PermissionDenied | Code::ResourceExhausted
    )
}

/// One refused call.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// The gRPC method's path, e.g. `/truce.v1.QueryService/Subscribe`.
    pub method: &'a str,
    /// The principal's name, when the caller authenticated.
    pub principal: Option<&'a str>,
    /// The caller's address.
    pub peer: Option<SocketAddr>,
    /// The status code.
    pub code: Code,
    /// Why, as the client was told.
    pub reason: &'a str,
}

/// What became of one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// It has its own line.
    Logged,
    /// It is counted in the next summary line.
    Counted,
}

/// The rate-limited log of refusals.
#[derive(Debug)]
pub struct RefusalLog {
    lines_per_second: u32,
    /// Anonymous callers' window, and authenticated callers'.
    windows: [Mutex<Window>; 2],
}

/// Whose refusals a window counts, for its summary line.
const CALLERS: [&str; 2] = ["anonymous", "authenticated"];

#[derive(Debug)]
struct Window {
    started: Instant,
    logged: u32,
    /// Refusals left out since the last summary.
    left_out: u64,
    /// A task will write the summary when the window ends.
    summary_due: bool,
}

impl RefusalLog {
    /// A log of at most `lines_per_second` refusal lines a second.
    pub fn new(lines_per_second: u32) -> Arc<RefusalLog> {
        let window = || {
            Mutex::new(Window {
                started: Instant::now(),
                logged: 0,
                left_out: 0,
                summary_due: false,
            })
        };
        Arc::new(RefusalLog {
            lines_per_second,
            windows: [window(), window()],
        })
    }

    /// Logs `refusal`, or counts it when this window's lines are spent.
    pub fn note(self: &Arc<Self>, refusal: &Refusal<'_>) -> Noted {
        let now = Instant::now();
        let callers = usize::from(refusal.principal.is_some());
        let mut window = self.windows[callers].lock().unwrap_or_else(|p| p.into_inner());
        let mut summary = 0;
        if now.duration_since(window.started) >= WINDOW {
            summary = std::mem::take(&mut window.left_out);
            window.started = now;
            window.logged = 0;
        }
        let noted = if window.logged < self.lines_per_second {
            window.logged += 1;
            Noted::Logged
        } else {
            window.left_out += 1;
            if !window.summary_due {
                window.summary_due = true;
                self.summarize_at(callers, window.started + WINDOW);
            }
            Noted::Counted
        };
        drop(window);
        if summary > 0 {
            log_summary(summary, CALLERS[callers]);
        }
        if noted == Noted::Logged {
            log_refusal(refusal);
        }
        noted
    }

    /// Writes the count of refusals left out once their window has ended,
    /// unless a refusal in a later window writes it first.
    fn summarize_at(self: &Arc<Self>, callers: usize, at: Instant) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Outside a runtime the next refusal after the window writes it.
            return;
        };
        let log = Arc::clone(self);
        runtime.spawn(async move {
            let mut at = at;
            loop {
                tokio::time::sleep_until(at).await;
                let now = Instant::now();
                let mut window = log.windows[callers].lock().unwrap_or_else(|p| p.into_inner());
                if window.left_out == 0 {
                    window.summary_due = false;
                    return;
                }
                if now.duration_since(window.started) < WINDOW {
                    at = window.started + WINDOW;
                    continue;
                }
                let left_out = std::mem::take(&mut window.left_out);
                window.started = now;
                window.logged = 0;
                window.summary_due = false;
                drop(window);
                log_summary(left_out, CALLERS[callers]);
                return;
            }
        });
    }
}

/// At most [`MAX_TEXT`] characters of `text`.
fn clipped(text: &str) -> &str {
    text.char_indices().nth(MAX_TEXT).map_or(text, |(end, _)| &text[..end])
}

fn log_refusal(refusal: &Refusal<'_>) {
    let peer = refusal
        .peer
        .map_or_else(|| "unknown".to_owned(), |peer| peer.to_string());
    // Debug formatting quotes and escapes what a client may have sent.
    tracing::info!(
        method = ?clipped(refusal.method),
        // Names come from the principals file, never from the client.
        principal = %refusal.principal.unwrap_or("-"),
        peer = %peer,
        code = ?refusal.code,
        reason = ?clipped(refusal.reason),
        "call refused"
    );
}

fn log_summary(left_out: u64, callers: &str) {
    tracing::info!(
        left_out,
        callers,
        "{left_out} more refused calls of {callers} callers were not logged one by one (at most \
         {LINES_PER_SECOND} lines a second each for anonymous and authenticated callers)"
    );
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("test").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8_lossy(&self.0.lock().expect("test"))
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    fn refusal(reason: &str) -> Refusal<'_> {
        Refusal {
            method: "/truce.v1.QueryService/ListIncidents",
            principal: None,
            peer: Some("127.0.0.1:4000".parse().expect("address")),
            code: Code::Unauthenticated,
            reason,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_refusals_is_logged_a_few_lines_a_second_and_counted() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let log = RefusalLog::new(LINES_PER_SECOND);

        let noted: Vec<Noted> = (0..10_000).map(|_| log.note(&refusal("unknown token"))).collect();
        let logged = noted.iter().filter(|n| **n == Noted::Logged).count();
        assert_eq!(logged, LINES_PER_SECOND as usize);
        tokio::time::sleep(WINDOW + Duration::from_millis(10)).await;
        let lines = captured.lines();
        assert_eq!(lines.len(), LINES_PER_SECOND as usize + 1, "{lines:#?}");
        let first = &lines[0];
        for part in [
            "call refused",
            r#"method="/truce.v1.QueryService/ListIncidents""#,
            "principal=-",
            "peer=127.0.0.1:4000",
            "code=Unauthenticated",
            r#"reason="unknown token""#,
        ] {
            assert!(first.contains(part), "{part} in {first}");
        }
        let summary = lines.last().expect("a summary");
        assert!(summary.contains("left_out=9990"), "{summary}");

        // A principal's refusal during an anonymous flood still has its line.
        let before = captured.lines().len();
        for _ in 0..1_000 {
            log.note(&refusal("unknown token"));
        }
        let insider = Refusal {
            principal: Some("hamas-desk"),
            code: Code::PermissionDenied,
            ..refusal("hamas made no report rpt-4")
        };
        assert_eq!(log.note(&insider), Noted::Logged);
        let lines = captured.lines();
        assert!(
            lines[before..].iter().any(|l| l.contains("principal=hamas-desk")),
            "{lines:#?}"
        );
        tokio::time::sleep(WINDOW * 3).await;
        let before = captured.lines().len();

        // The next window logs again, and the quiet one after it adds nothing.
        assert_eq!(log.note(&refusal("unknown token")), Noted::Logged);
        tokio::time::sleep(WINDOW * 3).await;
        assert_eq!(captured.lines().len(), before + 1);
    }

    #[test]
    fn what_a_client_sent_is_clipped_and_escaped() {
        assert_eq!(clipped(&"é".repeat(500)).chars().count(), MAX_TEXT);
        assert_eq!(clipped("short"), "short");
        let line = format!("{:?}", clipped("a\nforged line"));
        assert!(!line.contains('\n'), "{line}");
    }
}
