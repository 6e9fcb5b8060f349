//! Event-time windows built on state and timers (feature `stateful`): tumbling and sliding
//! windows with an aggregate, and session windows.
//!
//! Each window's aggregate lives in state under the window set's name, and an event-time timer
//! at the window's end fires when the watermark passes it: call [`Windows::fire`] (or
//! [`Sessions::fire`]) from [`on_timer`](crate::state::StatefulTransform::on_timer) to get the
//! result, once; the state is removed then. A record later than the watermark never reaches
//! the plugin (the host dead-letters it with reason `late`), so a window's result is final.
//!
//! ```ignore
//! let views = Windows::tumbling("views", 60_000, Count);
//! // in transform:  views.add(product, record.timestamp.unwrap_or(0), &());
//! // in on_timer:   if let Some(w) = views.fire(timer) { emit w.key, w.window.start, w.value }
//! ```

use crate::state::{StateValue, Value};
use crate::timers::{self, Domain, Timer};

/// How a window folds its records into one value.
pub trait Aggregate {
    /// What is added per record.
    type Input: ?Sized;
    /// The running value, kept in state.
    type Acc: StateValue;
    /// The value of an empty window.
    fn zero(&self) -> Self::Acc;
    /// Adds one record.
    fn add(&self, acc: &mut Self::Acc, input: &Self::Input);
}

/// Counts records.
pub struct Count;

impl Aggregate for Count {
    type Input = ();
    type Acc = u64;
    fn zero(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: &()) {
        *acc += 1;
    }
}

/// Sums numbers.
pub struct Sum;

impl Aggregate for Sum {
    type Input = f64;
    type Acc = f64;
    fn zero(&self) -> f64 {
        0.0
    }
    fn add(&self, acc: &mut f64, input: &f64) {
        *acc += input;
    }
}

/// A window's bounds: `start` inclusive, `end` exclusive (ms since the Unix epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First millisecond of the window.
    pub start: i64,
    /// First millisecond after it.
    pub end: i64,
}

/// A window's final result.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired<T> {
    /// The key the records were grouped by.
    pub key: Vec<u8>,
    /// The window.
    pub window: Window,
    /// The aggregate.
    pub value: T,
}

fn tagged(name: &str, start: i64, key: &[u8]) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&start.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn untag<'a>(name: &str, tagged: &'a [u8]) -> Option<(i64, &'a [u8])> {
    let rest = tagged.strip_prefix(name.as_bytes())?.strip_prefix(&[0])?;
    let start = i64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    Some((start, &rest[8..]))
}

/// Tumbling (`size` = `slide`) or sliding (`slide` < `size`) event-time windows per key.
pub struct Windows<A: Aggregate> {
    name: String,
    size: i64,
    slide: i64,
    aggregate: A,
    values: Value<A::Acc>,
}

impl<A: Aggregate> Windows<A> {
    /// Back-to-back windows of `size_ms`, named `name` (its timers' keys start with it).
    pub fn tumbling(name: &str, size_ms: i64, aggregate: A) -> Self {
        Self::sliding(name, size_ms, size_ms, aggregate)
    }

    /// Windows of `size_ms` starting every `slide_ms`: a record counts in every window that
    /// holds its time.
    pub fn sliding(name: &str, size_ms: i64, slide_ms: i64, aggregate: A) -> Self {
        assert!(size_ms > 0 && slide_ms > 0 && slide_ms <= size_ms);
        Windows {
            name: name.to_string(),
            size: size_ms,
            slide: slide_ms,
            aggregate,
            values: Value::new(&format!("window/{name}")),
        }
    }

    /// The windows that hold time `ts`, earliest first.
    pub fn windows_of(&self, ts: i64) -> Vec<Window> {
        let last = ts - ts.rem_euclid(self.slide);
        let mut out = Vec::new();
        let mut start = last;
        while start > ts - self.size {
            out.push(Window {
                start,
                end: start + self.size,
            });
            start -= self.slide;
        }
        out.reverse();
        out
    }

    /// Adds a record of `key` at time `ts` to every window that holds it.
    pub fn add(&self, key: &[u8], ts: i64, input: &A::Input) {
        for w in self.windows_of(ts) {
            let k = tagged(&self.name, w.start, key);
            let mut acc = self.values.get(&k).unwrap_or_else(|| {
                timers::register(Domain::EventTime, &k, w.end);
                self.aggregate.zero()
            });
            self.aggregate.add(&mut acc, input);
            self.values.set(&k, &acc);
        }
    }

    /// The result of the window whose timer fired, once (`None` for another timer).
    pub fn fire(&self, timer: &Timer<'_>) -> Option<Fired<A::Acc>> {
        if timer.domain != Domain::EventTime {
            return None;
        }
        let (start, key) = untag(&self.name, timer.key)?;
        let value = self.values.get(timer.key)?;
        self.values.remove(timer.key);
        Some(Fired {
            key: key.to_vec(),
            window: Window {
                start,
                end: start + self.size,
            },
            value,
        })
    }
}

/// Session windows per key: a session holds records less than `gap` apart and ends when the
/// watermark passes its last record plus the gap. One open session per key: a record within the
/// gap of it (on either side) extends it.
pub struct Sessions<A: Aggregate> {
    name: String,
    gap: i64,
    aggregate: A,
    values: Value<(i64, (i64, A::Acc))>,
}

impl<A: Aggregate> Sessions<A> {
    /// Sessions closed by `gap_ms` without records, named `name`.
    pub fn new(name: &str, gap_ms: i64, aggregate: A) -> Self {
        assert!(gap_ms > 0);
        Sessions {
            name: name.to_string(),
            gap: gap_ms,
            aggregate,
            values: Value::new(&format!("session/{name}")),
        }
    }

    fn timer_key(&self, key: &[u8]) -> Vec<u8> {
        tagged(&self.name, 0, key)
    }

    /// Adds a record of `key` at `ts`. Returns the key's previous session when this record is
    /// past its gap (that session is then over, before its timer fired).
    pub fn add(&self, key: &[u8], ts: i64, input: &A::Input) -> Option<Fired<A::Acc>> {
        let tk = self.timer_key(key);
        let mut closed = None;
        let (mut start, mut end, mut acc) = match self.values.get(&tk) {
            Some((start, (end, acc))) if ts <= end + self.gap && ts >= start - self.gap => {
                timers::cancel(Domain::EventTime, &tk, end + self.gap);
                (start, end, acc)
            }
            Some((start, (end, acc))) => {
                timers::cancel(Domain::EventTime, &tk, end + self.gap);
                closed = Some(Fired {
                    key: key.to_vec(),
                    window: Window { start, end },
                    value: acc,
                });
                (ts, ts, self.aggregate.zero())
            }
            None => (ts, ts, self.aggregate.zero()),
        };
        start = start.min(ts);
        end = end.max(ts);
        self.aggregate.add(&mut acc, input);
        self.values.set(&tk, &(start, (end, acc)));
        timers::register(Domain::EventTime, &tk, end + self.gap);
        closed
    }

    /// The session whose timer fired, once (`None` for another timer or a session extended
    /// since). Its window ends after its last record.
    pub fn fire(&self, timer: &Timer<'_>) -> Option<Fired<A::Acc>> {
        if timer.domain != Domain::EventTime {
            return None;
        }
        let (_, key) = untag(&self.name, timer.key)?;
        let (start, (end, value)) = self.values.get(timer.key)?;
        if end + self.gap != timer.time {
            return None;
        }
        self.values.remove(timer.key);
        Some(Fired {
            key: key.to_vec(),
            window: Window {
                start,
                end: end + 1,
            },
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_windows_hold_a_time_in_size_over_slide_windows() {
        let w = Windows::sliding("w", 60, 20, Count);
        let starts: Vec<i64> = w.windows_of(65).iter().map(|w| w.start).collect();
        assert_eq!(starts, vec![20, 40, 60]);
        let t = Windows::tumbling("t", 60, Count);
        assert_eq!(t.windows_of(-1), vec![Window { start: -60, end: 0 }]);
        assert_eq!(t.windows_of(0), vec![Window { start: 0, end: 60 }]);
    }

    #[test]
    fn tags_round_trip() {
        let k = tagged("views", -5, b"p1");
        assert_eq!(untag("views", &k), Some((-5, &b"p1"[..])));
        assert_eq!(untag("view", &k), None);
    }
}
