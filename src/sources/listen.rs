//! The dedicated LISTEN thread: its own connection LISTENs on `sources_change` and
//! `generic_sources_change`; each notification's routing key is re-read and swapped into the
//! registry at once (no debounce sleep: everything already queued is applied together). When the
//! connection drops it reconnects with backoff, LISTENs again and does a full resync, because
//! notifications sent while it was down are lost.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use postgres::{fallible_iterator::FallibleIterator, Client};

use super::registry::{self, Kind, SourceRegistry};
use crate::{
    crypto::SecretBox,
    db::{Connector, DbError},
};

/// How long one wait for notifications lasts before the thread looks at the stop flag.
const WAIT: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const QUEUE_CHANNEL: &str = "dispatch_queue_pending";

/// Called when any orchestrator on the database queued work (`dispatch_queue_pending`); set once
/// the agent hub exists. Also fired after every reconnect, since notifications were lost.
#[derive(Default)]
pub struct QueueSignal {
    hook: std::sync::Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl QueueSignal {
    pub fn set(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.hook.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(hook));
    }

    fn fire(&self) {
        if let Some(h) = self.hook.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            h();
        }
    }
}

/// `application_name` of the LISTEN connection (per process, so operators and tests can find it
/// in pg_stat_activity).
pub fn application_name() -> String {
    format!("kici-listen-{}", std::process::id())
}

/// Loads every source synchronously (so the daemon never serves with an empty registry by
/// mistake), then keeps it current from a thread.
pub fn start(
    connector: &Connector,
    sbox: SecretBox,
    registry: Arc<SourceRegistry>,
    queue: Arc<QueueSignal>,
    stop: Arc<AtomicBool>,
) -> Result<(), DbError> {
    let connector = connector.with_application_name(&application_name());
    let mut first = Some(sync(&connector, &sbox, &registry)?);
    let stopping = stop.clone();
    crate::supervise::spawn(
        "listen",
        move || stopping.load(Ordering::SeqCst),
        move || {
            // After a panic the thread starts over as after a lost connection: connect, LISTEN,
            // full resync.
            let client = match first.take() {
                Some(c) => c,
                None => match sync(&connector, &sbox, &registry) {
                    Ok(c) => c,
                    Err(e) => panic!("the LISTEN connection could not be re-opened: {e}"),
                },
            };
            run(client, &connector, &sbox, &registry, &queue, &stop)
        },
    )
    .map_err(|e| DbError::Refused(format!("cannot start the LISTEN thread: {e}")))?;
    Ok(())
}

/// Connect, LISTEN, then load everything: in that order, so no change falls between the load
/// and the LISTEN.
fn sync(
    connector: &Connector,
    sbox: &SecretBox,
    registry: &SourceRegistry,
) -> Result<Client, DbError> {
    let mut client = connector.connect()?;
    client
        .batch_execute(
            "LISTEN sources_change; LISTEN generic_sources_change; LISTEN dispatch_queue_pending",
        )
        .map_err(DbError::query("LISTEN for source changes"))?;
    let snapshot = registry::load_all(&mut client, sbox)?;
    if snapshot.is_empty() {
        log::info!("No sources configured yet (the orchestrator runs with zero sources)");
    } else {
        log::info!("Loaded {} source(s)", snapshot.len());
    }
    registry.replace(snapshot);
    Ok(client)
}

fn run(
    mut client: Client,
    connector: &Connector,
    sbox: &SecretBox,
    registry: &SourceRegistry,
    queue: &QueueSignal,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let Err(e) = wait_and_apply(&mut client, sbox, registry, queue) else {
            continue;
        };
        log::warn!("source change listener lost its connection ({e}); reconnecting");
        let mut backoff = Duration::from_millis(100);
        client = loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match sync(connector, sbox, registry) {
                Ok(c) => {
                    log::info!("source change listener reconnected and resynced");
                    crate::metrics::hooks::listen_reconnect();
                    queue.fire();
                    break c;
                }
                Err(e) => {
                    log::warn!(
                        "source change listener: {e}; retrying in {} ms",
                        backoff.as_millis()
                    );
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
    }
}

/// Waits up to `WAIT` for notifications and applies all that arrived. Err = connection lost.
fn wait_and_apply(
    client: &mut Client,
    sbox: &SecretBox,
    registry: &SourceRegistry,
    queue: &QueueSignal,
) -> Result<(), DbError> {
    let mut keys: Vec<(Kind, String)> = Vec::new();
    let mut queued_work = false;
    {
        let lost = |e: postgres::Error| DbError::Connect {
            url: "LISTEN connection".into(),
            detail: crate::db::describe(&e),
        };
        let mut notes = client.notifications();
        let first = notes.timeout_iter(WAIT).next().map_err(lost)?;
        let Some(first) = first else { return Ok(()) };
        let mut push = |n: postgres::Notification| {
            if n.channel() == QUEUE_CHANNEL {
                queued_work = true;
            } else if let Some(kind) = Kind::from_channel(n.channel()) {
                let key = (kind, n.payload().to_owned());
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        };
        push(first);
        let mut queued = notes.iter();
        while let Some(n) = queued.next().map_err(lost)? {
            push(n);
        }
    }
    if queued_work {
        queue.fire();
    }
    if keys.is_empty() {
        return Ok(());
    }
    log::debug!("source change: {keys:?}");
    registry.refresh(client, sbox, &keys)
}
