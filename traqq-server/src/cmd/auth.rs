//! `auth`: presents the token once for the rest of the connection. A few wrong tokens close
//! the connection ([`MAX_AUTH_FAILURES`](crate::protocol::MAX_AUTH_FAILURES)).

use super::Ctx;
use super::{Answer, Failure, Fields, Parsed};
use crate::protocol::{Request, Session, Status};

pub(super) fn parse<'a>(fields: &Fields<'a>) -> Parsed<Request<'a>> {
    Ok(Request::Auth {
        token: fields.required("token", fields.string("token"))?,
    })
}

pub(super) fn run(ctx: Ctx<'_>, presented: &str, session: &mut Session) -> Answer {
    let Some(expected) = ctx.token else {
        return Ok(None);
    };
    if token_matches(expected, presented) {
        session.authed = true;
        session.auth_failures = 0;
        return Ok(None);
    }
    session.authed = false;
    session.auth_failures = session.auth_failures.saturating_add(1);
    let message = if session.should_close() {
        "invalid token; too many wrong tokens on this connection: closing it"
    } else {
        "invalid token"
    };
    Err(Failure::Refused(Status::Unauthorized, message.into()))
}

/// Compares `presented` with `secret` without an early exit. The loop runs over the presented
/// bytes only, so the time taken depends on what the client sent, never on the secret's length
/// or on how much of a guess was right.
pub(crate) fn token_matches(secret: &str, presented: &str) -> bool {
    let (secret, presented) = (secret.as_bytes(), presented.as_bytes());
    let mut diff = u8::from(secret.len() != presented.len());
    for (i, &y) in presented.iter().enumerate() {
        // Past the secret's end, compare with a byte of it anyway (the length already differs).
        let x = match secret.len() {
            0 => 0,
            n => secret[i % n],
        };
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_is_eq() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "abcd"));
        assert!(!token_matches("abc", "ab"));
        assert!(!token_matches("", "a"));
        assert!(token_matches("", ""));
    }
}
