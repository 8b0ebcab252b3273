//! Webhook intake: one path for every delivery, posted to us directly (`http/webhooks.rs`) or
//! relayed by the Platform (`platform/deliver.rs`). `Intake::take` (intake.rs) verifies,
//! filters, deduplicates and records, and returns a `Verdict`; the HTTP route turns it into a
//! status code, the relay into a `webhook.ack`. `admission` holds the pure size rule, `recorder`
//! the group commit that makes a 2xx (or an `accepted` ack) mean "committed".
//!
//! The rules, the same both ways in:
//! - **Dedup.** A delivery is identified by its delivery id (generic: `<routing key>:<idempotency
//!   key or X-Request-ID>`, else a fresh UUID, or the Platform's `deliveryId`; GitHub:
//!   `X-GitHub-Delivery` or the Platform's `deliveryId`). The id is remembered for **24 hours, or
//!   the source's `dedupWindowSeconds` when that is longer** (GitHub App sources have no window:
//!   24 hours). A repeat within that time is a duplicate: answered as accepted, not recorded
//!   again, whichever way either copy came in. A delivery id the event log already holds stays a
//!   duplicate after that (db/events.rs).
//! - **Verification** against our stored secret (the Platform never holds it); the source's IP
//!   allow-list checks the address the Platform saw for relayed deliveries.
//! - **Size.** A generic delivery over its source's `maxPayloadBytes` is refused; one that starts
//!   runs (GitHub, local) over `KICI_EVENT_LOG_MAX_PAYLOAD_BYTES` too (admission.rs).
//! - **Body.** A local source takes a JSON body with `x-event-type` naming a repository inside
//!   its `localPath`; any other body declared `application/json` must be JSON.
//! - **Allowed events.** A generic source's `allowedEvents` (not for local sources) filters by
//!   the event its rules extract (falling back to the Platform's `event`): a filtered delivery
//!   is answered as accepted and not recorded.
//!
//! Deliberate differences between the two ways in:
//! - **Rate limits apply to direct senders only.** The Platform rate-limits its own side before
//!   relaying, and counting its relays here would turn its retries into rejections.
//! - **Where the delivery id and event come from.** Relayed: the Platform's `deliveryId` and
//!   `event`, computed at its edge; direct: from the request as above.
//! - **Org of a GitHub delivery.** Direct: the org in the route's path; relayed: the source's
//!   customer.
//!
//! Verdicts as answered (direct HTTP status / relayed `webhook.ack` result):
//! accepted 202 / `accepted`; duplicate 200 / `accepted`; filtered 200 / `accepted`; unknown
//! source 404 / `rejected_unknown_source`; bad signature 401 / `rejected_signature`; source
//! misconfigured 500, too large 413, body rule broken 400, not recorded (database down) 503 /
//! all `rejected_misconfigured` (with a reason; the Platform's sender retries); rate limited 429
//! (direct only).

pub mod admission;
pub mod intake;
pub mod kept_headers;
pub mod recorder;

pub use intake::{Incoming, Intake, Target, Verdict, Via};
pub use recorder::{Recorded, Recorder};
