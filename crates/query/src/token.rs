//! Resume tokens and page tokens: opaque to clients, checked on return.

use truce_domain::Position;
use truce_log::Incarnation;
use truce_proto::ServiceError;

/// A point in one incarnation of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResumeToken {
    /// Which log.
    pub(crate) incarnation: Incarnation,
    /// Everything up to and including this position was delivered.
    pub(crate) position: Position,
}

impl ResumeToken {
    const PREFIX: &'static str = "r1.";

    /// The text of the token for `position` in `incarnation`, without
    /// building one.
    pub(crate) fn text(incarnation: &Incarnation, position: Position) -> String {
        format!("{}{}.{}", Self::PREFIX, incarnation, position)
    }

    /// Reads a token a client sent back.
    pub(crate) fn decode(text: &str) -> Result<ResumeToken, ServiceError> {
        let malformed = || ServiceError::invalid("resume_token", "is not a resume token this service issued");
        let rest = text.strip_prefix(Self::PREFIX).ok_or_else(malformed)?;
        let (incarnation, position) = rest.rsplit_once('.').ok_or_else(malformed)?;
        if incarnation.is_empty() || !incarnation.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        let position = position.parse::<u64>().map_err(|_| malformed())?;
        Ok(ResumeToken {
            incarnation: Incarnation::from_text(incarnation),
            position: Position(position),
        })
    }
}

/// Where the next page of a listing starts, bound to the query that made
/// it and to the log position every page of it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageToken {
    /// Digest of the filter and order the token belongs to.
    pub(crate) query: String,
    /// The position the listing reflects.
    pub(crate) position: Position,
    /// The sort key of the last incident returned.
    pub(crate) after: (i128, u64),
}

impl PageToken {
    const PREFIX: &'static str = "p1.";

    /// The token's text.
    pub(crate) fn encode(&self) -> String {
        format!(
            "{}{}.{}.{}.{}",
            Self::PREFIX,
            self.query,
            self.position,
            self.after.0,
            self.after.1
        )
    }

    /// Reads a token, checking it belongs to `query`.
    pub(crate) fn decode(text: &str, query: &str) -> Result<PageToken, ServiceError> {
        let malformed = || ServiceError::invalid("page_token", "is not a page token this service issued");
        let mut parts = text.strip_prefix(Self::PREFIX).ok_or_else(malformed)?.split('.');
        let (Some(digest), Some(position), Some(key), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        if digest != query {
            return Err(ServiceError::invalid(
                "page_token",
                "belongs to a listing with another filter or order_by; send the same ones as for the first page",
            ));
        }
        Ok(PageToken {
            query: digest.to_owned(),
            position: Position(position.parse().map_err(|_| malformed())?),
            after: (
                key.parse().map_err(|_| malformed())?,
                id.parse().map_err(|_| malformed())?,
            ),
        })
    }
}

/// A short digest identifying a listing's filter and order.
pub(crate) fn query_digest(filter: &str, order_by: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(filter)
        .chain_update([0])
        .chain_update(order_by)
        .finalize();
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_tokens_round_trip_and_reject_garbage() {
        let token = ResumeToken {
            incarnation: Incarnation::from_text("0a1b2c3d4e5f6071"),
            position: Position(42),
        };
        assert_eq!(
            ResumeToken::decode(&ResumeToken::text(&token.incarnation, token.position)).unwrap(),
            token
        );
        for bad in ["", "42", "r1.", "r1.zz.4", "r1.0a1b.x", "r2.0a1b.4"] {
            assert!(ResumeToken::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_tokens_are_bound_to_their_query() {
        let q = query_digest("area = x", "opened");
        let token = PageToken {
            query: q.clone(),
            position: Position(9),
            after: (-5, 7),
        };
        assert_eq!(PageToken::decode(&token.encode(), &q).unwrap(), token);
        let other = query_digest("area = y", "opened");
        assert!(PageToken::decode(&token.encode(), &other).is_err());
        assert!(PageToken::decode("p1.x", &q).is_err());
    }
}
