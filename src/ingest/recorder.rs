//! Group commit for webhook deliveries, leader/follower style. A request thread queues its
//! delivery; if a recorder connection is free it becomes the leader: it takes everything queued at
//! that moment (up to `MAX_BATCH`), writes it with one statement (one commit) and hands each
//! waiter its result. If more queued meanwhile, leadership and the connection pass to the oldest
//! waiter, which writes the next batch. So with one sender the request thread writes its own
//! delivery (no hand-off to another thread), and with many, N deliveries cost one commit and each
//! waiter is woken exactly once.
//! The recorder owns its connections (not the pool), so a burst of webhooks never starves the
//! admin API, and a broken connection is replaced on its next batch.

use std::{
    collections::HashSet,
    sync::{
        mpsc::{self, SyncSender},
        Arc, Mutex, MutexGuard,
    },
};

use crate::db::{
    events::{self, Delivery},
    Connector, DbError,
};

const MAX_BATCH: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// New: durably committed.
    Accepted,
    /// The delivery id was already recorded.
    Duplicate,
}

type Reply = Result<Recorded, String>;
/// A recorder connection, opened lazily (`None` until first used or after a failure).
type Conn = Option<(postgres::Client, events::RecordStatements)>;

/// What a waiting request thread is told.
enum Msg {
    Done(Reply),
    /// Write the next batch (its own delivery is in it) on this connection.
    Lead(Box<Conn>),
}

struct Job {
    delivery: Delivery,
    tell: SyncSender<Msg>,
}

struct State {
    queue: Vec<Job>,
    idle: Vec<Conn>,
}

struct Inner {
    connector: Connector,
    state: Mutex<State>,
}

/// Cheap to clone; `record` blocks the calling thread until its delivery is committed.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl Recorder {
    /// `connections`: how many batches may be in flight at once (each on its own connection).
    pub fn start(connector: Connector, connections: usize) -> Recorder {
        let idle = (0..connections.max(1)).map(|_| None).collect();
        Recorder {
            inner: Arc::new(Inner {
                connector,
                state: Mutex::new(State {
                    queue: Vec::new(),
                    idle,
                }),
            }),
        }
    }

    /// `Err` (with the reason) when the delivery could not be committed: answer 503.
    pub fn record(&self, delivery: Delivery) -> Result<Recorded, String> {
        // Room for two hand-offs (one per connection) and the result: sends never block.
        let (tell, inbox) = mpsc::sync_channel(4);
        let mut st = self.lock();
        st.queue.push(Job { delivery, tell });
        let free = st.idle.pop();
        drop(st);
        if let Some(conn) = free {
            self.lead(conn);
        }
        loop {
            match inbox.recv() {
                Ok(Msg::Done(reply)) => return reply,
                Ok(Msg::Lead(conn)) => self.lead(*conn),
                Err(_) => return Err("the webhook recorder lost this delivery's reply".into()),
            }
        }
    }

    /// Writes one batch, answers its waiters, then passes the connection on (or parks it).
    fn lead(&self, mut conn: Conn) {
        let mut st = self.lock();
        let n = st.queue.len().min(MAX_BATCH);
        let batch: Vec<Job> = st.queue.drain(..n).collect();
        drop(st);
        if !batch.is_empty() {
            let started = std::time::Instant::now();
            let outcome = write(&mut conn, &self.inner.connector, &batch);
            crate::metrics::hooks::ingest_commit(started, batch.len(), outcome.is_ok());
            if outcome.is_err() {
                conn = None;
            }
            reply_all(batch, outcome);
        }
        let mut st = self.lock();
        match st.queue.first() {
            Some(next) => {
                if let Err(
                    mpsc::TrySendError::Full(Msg::Lead(c))
                    | mpsc::TrySendError::Disconnected(Msg::Lead(c)),
                ) = next.tell.try_send(Msg::Lead(Box::new(conn)))
                {
                    // Cannot happen (a queued waiter has an empty inbox); never lose the slot.
                    st.idle.push(*c);
                }
            }
            None => st.idle.push(conn),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Only plain pushes, pops and drains happen under this lock: a poisoned one is usable.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Per job: `Some(new?)` for those sent to the database, `None` for in-batch repeats.
fn write(
    conn: &mut Conn,
    connector: &Connector,
    batch: &[Job],
) -> Result<Vec<Option<bool>>, DbError> {
    if conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
        let mut client = connector.connect()?;
        let stmt = events::prepare_record(&mut client)?;
        *conn = Some((client, stmt));
    }
    let Some((client, stmt)) = conn.as_mut() else {
        unreachable!("connected above")
    };
    // The same delivery id twice in one batch: the first is recorded, the rest are duplicates.
    let mut seen = HashSet::new();
    let firsts: Vec<bool> = batch
        .iter()
        .map(|j| seen.insert(j.delivery.delivery_id.as_str()))
        .collect();
    let unique: Vec<&Delivery> = batch
        .iter()
        .zip(&firsts)
        .filter(|(_, f)| **f)
        .map(|(j, _)| &j.delivery)
        .collect();
    let mut fresh = events::record(client, stmt, &unique)?.into_iter();
    Ok(firsts
        .iter()
        .map(|f| if *f { fresh.next() } else { None })
        .collect())
}

fn reply_all(batch: Vec<Job>, outcome: Result<Vec<Option<bool>>, DbError>) {
    match outcome {
        Ok(fresh) => {
            for (job, r) in batch.into_iter().zip(fresh) {
                let reply = Ok(if r == Some(true) {
                    Recorded::Accepted
                } else {
                    Recorded::Duplicate
                });
                let _ = job.tell.try_send(Msg::Done(reply));
            }
        }
        Err(e) => {
            log::warn!("recording {} webhook(s) failed: {e}", batch.len());
            let msg = e.to_string();
            for job in batch {
                let _ = job.tell.try_send(Msg::Done(Err(msg.clone())));
            }
        }
    }
}
