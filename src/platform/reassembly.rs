//! Reassembly of chunked relayed webhooks (docs/platform-protocol.md, "Relayed webhooks"). Pure:
//! the clock is a parameter. Every delivery gets **exactly one** verdict: `Complete` (then verified
//! and acked by the caller) or `Reject` (acked `rejected_misconfigured`), never more.
//!
//! Where the reference misbehaves we do not: a start with `totalSize` over 25 MiB or
//! `chunkCount` 0 is rejected at once (the reference stays silent and the Platform times out); a
//! broken stream is rejected once and its remaining chunks are swallowed (the reference acks each
//! of them); a duplicate start of an in-flight delivery is ignored (the reference rejects it and
//! then also accepts the original); base64 is decoded strictly; an expired buffer is rejected once.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use data_encoding::BASE64;

/// The largest relayed body (the Platform's own cap).
pub const MAX_BODY: u64 = 25 * 1024 * 1024;
/// A delivery must arrive whole within this long of its start.
pub const BUFFER_TTL: Duration = Duration::from_secs(30);
/// Bounds on what may be in flight at once (memory).
pub const MAX_IN_FLIGHT: usize = 256;
pub const MAX_IN_FLIGHT_BYTES: u64 = 64 * 1024 * 1024;

/// `webhook.relay.start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub message_id: String,
    pub routing_key: String,
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub signature_header_name: Option<String>,
    pub signature_header: Option<String>,
    pub client_ip: Option<String>,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub total_size: u64,
    pub chunk_count: u64,
}

/// `webhook.relay.chunk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub message_id: String,
    pub sequence: u64,
    pub data: String,
    pub last: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Waiting for more chunks.
    Pending,
    /// All bytes arrived: verify, record, ack.
    Complete(Box<Start>, Vec<u8>),
    /// Ack `rejected_misconfigured` with this delivery id and reason, once.
    Reject {
        message_id: String,
        delivery_id: String,
        reason: String,
    },
    /// Nothing to send (a duplicate start, a chunk of an already rejected stream).
    Ignore,
}

struct Buffer {
    start: Start,
    body: Vec<u8>,
    next: u64,
    started: Instant,
}

#[derive(Default)]
pub struct Reassembler {
    buffers: HashMap<String, Buffer>,
    /// Message ids already answered, so their stray chunks are swallowed (kept one TTL).
    answered: HashMap<String, Instant>,
}

impl Reassembler {
    pub fn in_flight(&self) -> usize {
        self.buffers.len()
    }

    fn reject(
        &mut self,
        message_id: &str,
        delivery_id: &str,
        reason: String,
        now: Instant,
    ) -> Step {
        self.buffers.remove(message_id);
        self.answered.insert(message_id.to_owned(), now);
        Step::Reject {
            message_id: message_id.to_owned(),
            delivery_id: delivery_id.to_owned(),
            reason,
        }
    }

    pub fn start(&mut self, s: Start, now: Instant) -> Step {
        if self.buffers.contains_key(&s.message_id) {
            return Step::Ignore;
        }
        self.answered.remove(&s.message_id);
        let (id, delivery) = (s.message_id.clone(), s.delivery_id.clone());
        if s.total_size > MAX_BODY {
            let reason = format!(
                "totalSize {} exceeds the {MAX_BODY}-byte limit",
                s.total_size
            );
            return self.reject(&id, &delivery, reason, now);
        }
        if s.chunk_count == 0 {
            return self.reject(&id, &delivery, "chunkCount must be at least 1".into(), now);
        }
        let reserved: u64 = self.buffers.values().map(|b| b.start.total_size).sum();
        if self.buffers.len() >= MAX_IN_FLIGHT || reserved + s.total_size > MAX_IN_FLIGHT_BYTES {
            let reason = "too many relayed deliveries in flight; retry".to_owned();
            return self.reject(&id, &delivery, reason, now);
        }
        let capacity = s.total_size.min(1024 * 1024) as usize;
        self.buffers.insert(
            id,
            Buffer {
                start: s,
                body: Vec::with_capacity(capacity),
                next: 0,
                started: now,
            },
        );
        Step::Pending
    }

    pub fn chunk(&mut self, c: Chunk, now: Instant) -> Step {
        let Some(buffer) = self.buffers.get_mut(&c.message_id) else {
            if self.answered.contains_key(&c.message_id) {
                return Step::Ignore;
            }
            // The start never came (or expired): the message id is all we know.
            let id = c.message_id.clone();
            return self.reject(&id, &id, "chunk for an unknown delivery".into(), now);
        };
        let delivery = buffer.start.delivery_id.clone();
        let fail = |this: &mut Reassembler, reason: String| {
            this.reject(&c.message_id, &delivery, reason, now)
        };
        if c.sequence != buffer.next {
            let reason = format!(
                "chunk {} out of order (expected {})",
                c.sequence, buffer.next
            );
            return fail(self, reason);
        }
        if c.sequence >= buffer.start.chunk_count {
            let reason = format!(
                "chunk {} beyond chunkCount {}",
                c.sequence, buffer.start.chunk_count
            );
            return fail(self, reason);
        }
        let Ok(bytes) = BASE64.decode(c.data.as_bytes()) else {
            return fail(self, format!("chunk {} is not valid base64", c.sequence));
        };
        let total = buffer.body.len() as u64 + bytes.len() as u64;
        if total > buffer.start.total_size || total > MAX_BODY {
            let reason = format!(
                "{total} bytes received, more than totalSize {}",
                buffer.start.total_size
            );
            return fail(self, reason);
        }
        buffer.body.extend_from_slice(&bytes);
        buffer.next += 1;
        if !c.last {
            return Step::Pending;
        }
        if buffer.next != buffer.start.chunk_count || total != buffer.start.total_size {
            let reason = format!(
                "final chunk after {} chunk(s) and {total} byte(s); expected {} and {}",
                buffer.next, buffer.start.chunk_count, buffer.start.total_size
            );
            return fail(self, reason);
        }
        let done = self.buffers.remove(&c.message_id).expect("present");
        self.answered.insert(c.message_id, now);
        Step::Complete(Box::new(done.start), done.body)
    }

    /// A frame about `message_id` was malformed: reject its delivery once (the buffered start's
    /// delivery id, else `delivery_id`, else the message id), or ignore if already answered.
    pub fn fail(
        &mut self,
        message_id: &str,
        delivery_id: Option<&str>,
        why: String,
        now: Instant,
    ) -> Step {
        let buffered = self
            .buffers
            .get(message_id)
            .map(|b| b.start.delivery_id.clone());
        if buffered.is_none() && self.answered.contains_key(message_id) {
            return Step::Ignore;
        }
        let delivery = buffered
            .or_else(|| delivery_id.map(str::to_owned))
            .unwrap_or_else(|| message_id.to_owned());
        self.reject(message_id, &delivery, why, now)
    }

    /// Rejects (once) the deliveries not complete within [`BUFFER_TTL`]; forgets old answers.
    pub fn expire(&mut self, now: Instant) -> Vec<Step> {
        let stale: Vec<(String, String)> = self
            .buffers
            .iter()
            .filter(|(_, b)| now.duration_since(b.started) > BUFFER_TTL)
            .map(|(id, b)| (id.clone(), b.start.delivery_id.clone()))
            .collect();
        self.answered
            .retain(|_, at| now.duration_since(*at) <= BUFFER_TTL);
        stale
            .into_iter()
            .map(|(id, delivery)| {
                let reason = format!("incomplete after {} s", BUFFER_TTL.as_secs());
                self.reject(&id, &delivery, reason, now)
            })
            .collect()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::platform) fn start(id: &str, total: u64, chunks: u64) -> Start {
        Start {
            message_id: id.into(),
            routing_key: "github:1".into(),
            delivery_id: format!("d-{id}"),
            event: "push".into(),
            action: None,
            signature_header_name: None,
            signature_header: None,
            client_ip: None,
            headers: BTreeMap::new(),
            total_size: total,
            chunk_count: chunks,
        }
    }

    fn chunk(id: &str, seq: u64, data: &[u8], last: bool) -> Chunk {
        Chunk {
            message_id: id.into(),
            sequence: seq,
            data: BASE64.encode(data),
            last,
        }
    }

    fn rejected(step: Step) -> (String, String) {
        match step {
            Step::Reject {
                delivery_id,
                reason,
                ..
            } => (delivery_id, reason),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn reassembles_in_order() {
        let mut r = Reassembler::default();
        let t = Instant::now();
        assert_eq!(r.start(start("m", 6, 2), t), Step::Pending);
        assert_eq!(r.chunk(chunk("m", 0, b"abc", false), t), Step::Pending);
        match r.chunk(chunk("m", 1, b"def", true), t) {
            Step::Complete(s, body) => {
                assert_eq!(
                    (s.delivery_id.as_str(), body.as_slice()),
                    ("d-m", &b"abcdef"[..])
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.in_flight(), 0);
        // A late duplicate chunk of a finished delivery says nothing.
        assert_eq!(r.chunk(chunk("m", 1, b"def", true), t), Step::Ignore);
        // An empty body is one empty chunk.
        assert_eq!(r.start(start("e", 0, 1), t), Step::Pending);
        assert!(
            matches!(r.chunk(chunk("e", 0, b"", true), t), Step::Complete(_, b) if b.is_empty())
        );
    }

    #[test]
    fn every_violation_is_rejected_exactly_once() {
        let t = Instant::now();
        let cases: Vec<(Vec<Chunk>, u64, u64, &str)> = vec![
            (vec![chunk("m", 1, b"abc", false)], 6, 2, "out of order"),
            (
                vec![chunk("m", 0, b"abc", false), chunk("m", 0, b"abc", false)],
                6,
                2,
                "out of order",
            ),
            (
                vec![
                    chunk("m", 0, b"abc", false),
                    chunk("m", 1, b"def", false),
                    chunk("m", 2, b"", false),
                ],
                6,
                2,
                "beyond chunkCount",
            ),
            (
                vec![chunk("m", 0, b"abcdefg", false)],
                6,
                2,
                "more than totalSize",
            ),
            (
                vec![chunk("m", 0, b"abc", true)],
                6,
                2,
                "final chunk after 1 chunk(s)",
            ),
            (
                vec![chunk("m", 0, b"abcdef", true)],
                6,
                2,
                "final chunk after 1 chunk(s)",
            ),
            (
                vec![chunk("m", 0, b"ab", false), chunk("m", 1, b"cd", true)],
                6,
                2,
                "4 byte(s)",
            ),
        ];
        for (chunks, total, count, wanted) in cases {
            let mut r = Reassembler::default();
            r.start(start("m", total, count), t);
            let mut steps: Vec<Step> = chunks.into_iter().map(|c| r.chunk(c, t)).collect();
            // The remaining chunks of a broken stream are swallowed.
            steps.push(r.chunk(chunk("m", 5, b"x", true), t));
            let rejections: Vec<(String, String)> = steps
                .into_iter()
                .filter(|s| matches!(s, Step::Reject { .. }))
                .map(rejected)
                .collect();
            assert_eq!(rejections.len(), 1, "{wanted}: {rejections:?}");
            assert_eq!(rejections[0].0, "d-m");
            assert!(
                rejections[0].1.contains(wanted),
                "{wanted}: {}",
                rejections[0].1
            );
        }
    }

    #[test]
    fn bad_starts_and_strict_base64() {
        let t = Instant::now();
        let mut r = Reassembler::default();
        let (d, reason) = rejected(r.start(start("big", MAX_BODY + 1, 1), t));
        assert_eq!(d, "d-big");
        assert!(reason.contains("exceeds"), "{reason}");
        assert!(rejected(r.start(start("zero", 1, 0), t))
            .1
            .contains("chunkCount"));
        assert_eq!(r.chunk(chunk("zero", 0, b"x", true), t), Step::Ignore);

        // Whitespace, missing or extra padding, foreign characters, non-zero trailing bits.
        for bad in ["YWJj\n", "YW Jj", "YWJ", "YWJj=", "YWJk*", "YR=="] {
            let mut r2 = Reassembler::default();
            r2.start(start("b", 3, 1), t);
            let c = Chunk {
                message_id: "b".into(),
                sequence: 0,
                data: bad.into(),
                last: true,
            };
            assert!(rejected(r2.chunk(c, t)).1.contains("base64"), "{bad:?}");
        }
    }

    #[test]
    fn unknown_duplicate_and_expired() {
        let t = Instant::now();
        let mut r = Reassembler::default();
        let (d, _) = rejected(r.chunk(chunk("ghost", 0, b"x", false), t));
        assert_eq!(
            d, "ghost",
            "without a start the message id stands in for the delivery id"
        );
        assert_eq!(r.chunk(chunk("ghost", 1, b"x", true), t), Step::Ignore);

        assert_eq!(r.start(start("m", 3, 1), t), Step::Pending);
        assert_eq!(
            r.start(start("m", 3, 1), t),
            Step::Ignore,
            "duplicate start"
        );
        assert!(matches!(
            r.chunk(chunk("m", 0, b"abc", true), t),
            Step::Complete(..)
        ));

        r.start(start("slow", 3, 2), t);
        assert!(r.expire(t + Duration::from_secs(29)).is_empty());
        let expired = r.expire(t + Duration::from_secs(31));
        assert_eq!(expired.len(), 1);
        assert_eq!(
            r.chunk(chunk("slow", 0, b"a", false), t + Duration::from_secs(32)),
            Step::Ignore
        );
        assert!(r.expire(t + Duration::from_secs(100)).is_empty());
        // A malformed frame for a known stream rejects it once, naming its delivery.
        r.start(start("bad", 3, 2), t + Duration::from_secs(100));
        let (d, _) = rejected(r.fail("bad", None, "broken".into(), t + Duration::from_secs(100)));
        assert_eq!(d, "d-bad");
        assert_eq!(
            r.fail("bad", None, "again".into(), t + Duration::from_secs(100)),
            Step::Ignore
        );
        // After its tombstone is gone, a new start with the same id is a new delivery.
        assert_eq!(
            r.start(start("slow", 1, 1), t + Duration::from_secs(100)),
            Step::Pending
        );
    }

    #[test]
    fn in_flight_memory_is_bounded() {
        let t = Instant::now();
        let mut r = Reassembler::default();
        let big = MAX_BODY;
        assert_eq!(r.start(start("a", big, 1), t), Step::Pending);
        assert_eq!(r.start(start("b", big, 1), t), Step::Pending);
        assert!(rejected(r.start(start("c", big, 1), t))
            .1
            .contains("in flight"));
    }
}

#[cfg(test)]
mod props {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Start {
            id: u8,
            total: u64,
            count: u64,
        },
        Chunk {
            id: u8,
            seq: u64,
            data: String,
            last: bool,
        },
        Fail {
            id: u8,
        },
        Wait {
            secs: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let total = prop_oneof![0u64..16, Just(MAX_BODY), Just(MAX_BODY + 1), any::<u64>()];
        let data = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(|b| BASE64.encode(&b)),
            ".{0,12}",
        ];
        prop_oneof![
            (0u8..4, total, 0u64..4).prop_map(|(id, total, count)| Op::Start { id, total, count }),
            (0u8..4, 0u64..4, data, any::<bool>()).prop_map(|(id, seq, data, last)| Op::Chunk {
                id,
                seq,
                data,
                last
            }),
            (0u8..4).prop_map(|id| Op::Fail { id }),
            (0u64..40).prop_map(|secs| Op::Wait { secs }),
        ]
    }

    fn start_msg(id: u8, total: u64, count: u64) -> Start {
        super::tests::start(&format!("m{id}"), total, count)
    }

    /// The message id a verdict is about; checks what a `Complete` carries.
    fn verdict_of(step: &Step) -> Option<String> {
        match step {
            Step::Complete(start, body) => {
                assert_eq!(
                    body.len() as u64,
                    start.total_size,
                    "complete means all bytes"
                );
                Some(start.message_id.clone())
            }
            Step::Reject { message_id, .. } => Some(message_id.clone()),
            Step::Pending | Step::Ignore => None,
        }
    }

    proptest! {
        #![proptest_config(crate::props::config())]

        /// Any sequence of starts, chunks, failures and waits: no panic, at most one verdict per
        /// accepted start, and after the TTL every accepted start has had exactly one.
        #[test]
        fn never_panics_and_answers_each_delivery_once(ops in proptest::collection::vec(op(), 0..40)) {
            let mut r = Reassembler::default();
            let mut now = Instant::now();
            // Accepted starts still waiting for their verdict.
            let mut open: HashMap<String, ()> = HashMap::new();
            for op in ops {
                let steps = match op {
                    Op::Start { id, total, count } => {
                        let step = r.start(start_msg(id, total, count), now);
                        if step == Step::Pending {
                            open.insert(format!("m{id}"), ());
                        }
                        vec![step]
                    }
                    Op::Chunk { id, seq, data, last } => {
                        let c = Chunk { message_id: format!("m{id}"), sequence: seq, data, last };
                        vec![r.chunk(c, now)]
                    }
                    Op::Fail { id } => vec![r.fail(&format!("m{id}"), None, "bad frame".into(), now)],
                    Op::Wait { secs } => {
                        now += Duration::from_secs(secs);
                        r.expire(now)
                    }
                };
                for step in &steps {
                    if let Some(id) = verdict_of(step) {
                        open.remove(&id);
                    }
                }
                prop_assert!(r.in_flight() <= MAX_IN_FLIGHT);
                prop_assert_eq!(r.in_flight(), open.len(), "buffered = accepted and unanswered");
            }
            for step in r.expire(now + BUFFER_TTL + Duration::from_secs(1)) {
                if let Some(id) = verdict_of(&step) {
                    prop_assert!(open.remove(&id).is_some(), "expired twice: {}", id);
                }
            }
            prop_assert!(open.is_empty(), "never answered: {:?}", open);
            prop_assert_eq!(r.in_flight(), 0);
        }
    }
}
