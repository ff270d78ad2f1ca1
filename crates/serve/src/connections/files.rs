//! The open-file limit.
//!
//! Every connection is a file descriptor, and the usual soft limit (1,024)
//! is far below what a server with thousands of subscribers needs, while
//! the hard limit, which an unprivileged process may raise its soft limit
//! to, is usually much higher.

use std::sync::Once;

use rustix::process::{Resource, getrlimit, setrlimit};

/// Raises this process's soft limit on open files to its hard limit, once.
pub(crate) fn raise_open_file_limit() {
    static RAISED: Once = Once::new();
    RAISED.call_once(|| {
        let limit = getrlimit(Resource::Nofile);
        // `None` is no limit.
        if limit.current.is_none() || limit.current == limit.maximum {
            return;
        }
        let mut raised = limit;
        raised.current = limit.maximum;
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::info!(
                from = ?limit.current,
                to = ?limit.maximum,
                "raised the open-file limit to the hard limit"
            ),
            Err(error) => tracing::warn!(
                %error,
                soft = ?limit.current,
                hard = ?limit.maximum,
                "cannot raise the open-file limit; connections beyond it will be refused"
            ),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_the_hard_limit() {
        raise_open_file_limit();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
    }
}
