//! `ping`: `{"success":true,"data":"pong"}`, a round trip that touches nothing.

use super::Answer;

pub(super) fn run() -> Answer {
    Ok(Some(br#""pong""#.to_vec()))
}
