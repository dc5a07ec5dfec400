//! [`EventList`]: the events of batch requests, kept until they are recorded, their properties
//! in one shared buffer.
//!
//! A server keeps every event of a pipelined group of batch lines until the group is recorded.
//! As one [`IncomingEvent`] each, that was a thousand exact-size allocations per line, served
//! from the allocator's slow path; here a list grows one buffer, and recording refills one
//! scratch event from it.

use std::borrow::Cow;

use super::{check_name, IncomingEvent, Scalar};
use crate::Result;

/// Events in order, each with its properties (or why it is not an event).
#[derive(Debug, Default)]
pub struct EventList<'a> {
    /// Every event's properties, back to back.
    properties: Vec<(Cow<'a, str>, Scalar<'a>)>,
    /// Per event: where its properties end in `properties`, or its error.
    ends: Vec<Result<usize>>,
}

impl<'a> EventList<'a> {
    /// An empty list.
    pub fn new() -> Self {
        EventList::default()
    }

    /// Number of events (errors included).
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the list holds no event.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Makes room for `events` more events holding `properties` properties in all.
    pub(crate) fn reserve(&mut self, events: usize, properties: usize) {
        self.ends.reserve(events);
        self.properties.reserve(properties);
    }

    /// Adds an event (its properties moved into the list), or why it is not one.
    pub fn push(&mut self, event: Result<IncomingEvent<'a>>) {
        let end = event.map(|e| {
            self.properties.extend(e.properties);
            self.properties.len()
        });
        self.ends.push(end);
    }

    /// Adds the event of these properties, or the error of its `event` name, as
    /// [`IncomingEvent::validate`] would.
    pub(crate) fn push_checked(&mut self, properties: impl Iterator<Item = (Cow<'a, str>, Scalar<'a>)>) {
        let start = self.properties.len();
        self.properties.extend(properties);
        let end = match self.properties.get(start..).map_or(Ok(()), check_name) {
            Ok(()) => Ok(self.properties.len()),
            Err(e) => {
                self.properties.truncate(start);
                Err(e)
            }
        };
        self.ends.push(end);
    }

    /// Moves the events of `other` to the end of this list.
    pub fn append(&mut self, other: EventList<'a>) {
        if self.is_empty() {
            // The common first batch of a group: taken as it is, not copied.
            *self = other;
            return;
        }
        let base = self.properties.len();
        self.properties.extend(other.properties);
        self.ends
            .extend(other.ends.into_iter().map(|end| end.map(|end| end + base)));
    }

    /// Calls `f` with each event in order, or its error. Each event is refilled into one
    /// scratch event: nothing is allocated per event once the scratch has room.
    pub fn for_each(self, mut f: impl FnMut(Result<&IncomingEvent<'a>>)) {
        let mut scratch = IncomingEvent::default();
        let mut properties = self.properties.into_iter();
        let mut start = 0;
        for end in self.ends {
            match end {
                Ok(end) => {
                    scratch.properties.clear();
                    scratch
                        .properties
                        .extend(properties.by_ref().take(end.saturating_sub(start)));
                    start = end;
                    f(Ok(&scratch));
                }
                Err(e) => f(Err(e)),
            }
        }
    }

    /// The events in order as events of their own (one allocation each), or their errors.
    pub fn into_events(self) -> impl Iterator<Item = Result<IncomingEvent<'a>>> {
        let mut properties = self.properties.into_iter();
        let mut start = 0;
        self.ends.into_iter().map(move |end| {
            end.map(|end| {
                let taken = properties.by_ref().take(end.saturating_sub(start)).collect();
                start = end;
                IncomingEvent { properties: taken }
            })
        })
    }
}

impl<'a> FromIterator<Result<IncomingEvent<'a>>> for EventList<'a> {
    fn from_iter<I: IntoIterator<Item = Result<IncomingEvent<'a>>>>(events: I) -> Self {
        let mut list = EventList::new();
        events.into_iter().for_each(|e| list.push(e));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn parsed(lines: &[&'static str]) -> Vec<Result<IncomingEvent<'static>>> {
        lines.iter().map(|l| IncomingEvent::parse_str(l)).collect()
    }

    /// Two lists (events of different sizes, errors among them) appended: every way out gives
    /// the events in order, each with exactly its own properties, and the errors where they were.
    #[test]
    fn appended_lists_give_back_each_event_and_error_in_order() {
        let first = [
            r#"{"event":"a","geo":"US","n":1}"#,
            r#"{"geo":"DE"}"#,
            r#"{"event":"b"}"#,
        ];
        let second = [
            r#"{"event":"c","x":{"y":true},"f":1.5,"g":"x","h":"y"}"#,
            r#"{"event":""}"#,
            r#"{"event":"d","ip":"1.2.3.4"}"#,
        ];
        let expected: Vec<_> = parsed(&first).into_iter().chain(parsed(&second)).collect();
        assert!(expected[1].is_err() && expected[4].is_err() && expected[3].is_ok());
        let build = || {
            let mut list: EventList<'_> = parsed(&first).into_iter().collect();
            list.append(parsed(&second).into_iter().collect());
            list
        };
        assert_eq!(build().len(), expected.len());

        let mut seen = Vec::new();
        build().for_each(|e| seen.push(e.cloned()));
        let owned: Vec<_> = build().into_events().collect();
        for got in [seen, owned] {
            assert_eq!(got.len(), expected.len());
            for (got, want) in got.iter().zip(&expected) {
                match (got, want) {
                    (Ok(got), Ok(want)) => assert_eq!(got, want),
                    (Err(got), Err(want)) => assert_eq!(got.to_string(), want.to_string()),
                    _ => panic!("{got:?} where {want:?} was expected"),
                }
            }
        }
    }

    /// `push_checked` rejects what `validate` rejects, and keeps none of a rejected event's
    /// properties.
    #[test]
    fn push_checked_rejects_a_bad_name_as_validate_does() {
        let owned = |pairs: &[(&'static str, Scalar<'static>)]| {
            pairs
                .iter()
                .map(|(n, v)| (Cow::Borrowed(*n), v.clone()))
                .collect::<Vec<_>>()
        };
        let mut list = EventList::new();
        list.push_checked(owned(&[("geo", Scalar::Str("US".into()))]).into_iter());
        list.push_checked(owned(&[("event", Scalar::Int(3))]).into_iter());
        list.push_checked(owned(&[("event", Scalar::Str("ok".into())), ("n", Scalar::Int(1))]).into_iter());
        let got: Vec<_> = list.into_events().collect();
        assert!(
            matches!(got[0], Err(Error::EventName("is missing"))),
            "{:?}",
            got[0]
        );
        assert!(
            matches!(got[1], Err(Error::EventName("must be a string"))),
            "{:?}",
            got[1]
        );
        let Ok(event) = &got[2] else {
            panic!("{:?}", got[2])
        };
        assert_eq!(event.properties().count(), 2);
        assert_eq!(event.name(), "ok");
    }
}
