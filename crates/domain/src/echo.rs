//! Client text repeated in an answer.
//!
//! An error that repeats what the client sent must not grow with it: a
//! status travels in HTTP/2 trailers, which clients cap (16 KiB by
//! default), and past the cap a client sees `RESOURCE_EXHAUSTED` instead of
//! the real error. Every message that shows client input quotes it with
//! [`quote`], which keeps a short prefix.

/// The most characters of client text an answer repeats.
pub const QUOTED_CHARS: usize = 64;

/// `text` quoted and escaped as Rust's `{:?}` shows it, cut after
/// [`QUOTED_CHARS`] characters with an ellipsis and the full length.
pub fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} characters)", &text[..cut], text.chars().count()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_quoted_whole_and_long_text_is_cut() {
        assert_eq!(quote("ATLINE"), "\"ATLINE\"");
        assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
        let long = "é".repeat(10_000);
        let quoted = quote(&long);
        assert_eq!(quoted, format!("{:?}… (10000 characters)", "é".repeat(QUOTED_CHARS)));
        assert!(quoted.len() < 200);
    }
}
