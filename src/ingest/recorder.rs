//! Group commit for webhook deliveries. Request threads hand their delivery to a small pool of
//! recorder threads and wait; each recorder takes everything queued at that moment (up to
//! `MAX_BATCH`) and writes it with one statement, so N concurrent senders cost one commit, not N.
//! With a single sender it degrades to one commit per delivery, like a plain INSERT.
//! The recorder owns its connections (not the pool), so a burst of webhooks never starves the
//! admin API, and a broken connection is replaced on the next batch.

use std::{
    collections::HashSet,
    sync::{
        mpsc::{self, Receiver, Sender, SyncSender},
        Arc, Mutex,
    },
    thread,
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

struct Job {
    delivery: Delivery,
    reply: SyncSender<Reply>,
}

/// Cheap to clone; `record` blocks the calling thread until its delivery is committed.
#[derive(Clone)]
pub struct Recorder {
    jobs: Sender<Job>,
}

impl Recorder {
    pub fn start(connector: Connector, threads: usize) -> Recorder {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let (rx, connector) = (rx.clone(), connector.clone());
            let spawned = thread::Builder::new()
                .name(format!("recorder-{i}"))
                .spawn(move || run(&rx, &connector));
            if let Err(e) = spawned {
                log::error!("cannot start a webhook recorder thread: {e}");
            }
        }
        Recorder { jobs: tx }
    }

    /// `Err` (with the reason) when the delivery could not be committed: answer 503.
    pub fn record(&self, delivery: Delivery) -> Result<Recorded, String> {
        let (reply, wait) = mpsc::sync_channel(1);
        self.jobs
            .send(Job { delivery, reply })
            .map_err(|_| "the webhook recorder has stopped".to_owned())?;
        wait.recv()
            .unwrap_or_else(|_| Err("the webhook recorder has stopped".into()))
    }
}

fn run(rx: &Mutex<Receiver<Job>>, connector: &Connector) {
    let mut conn: Option<(postgres::Client, postgres::Statement)> = None;
    loop {
        let batch = {
            let rx = match rx.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            let Ok(first) = rx.recv() else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        let outcome = write(&mut conn, connector, &batch);
        if outcome.is_err() {
            conn = None;
        }
        reply_all(batch, outcome);
    }
}

/// Per job: `Some(new?)` for those sent to the database, `None` for in-batch repeats.
fn write(
    conn: &mut Option<(postgres::Client, postgres::Statement)>,
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
        Ok(results) => {
            for (job, r) in batch.into_iter().zip(results) {
                let _ = job.reply.send(Ok(if r == Some(true) {
                    Recorded::Accepted
                } else {
                    Recorded::Duplicate
                }));
            }
        }
        Err(e) => {
            log::warn!("recording {} webhook(s) failed: {e}", batch.len());
            let msg = e.to_string();
            for job in batch {
                let _ = job.reply.send(Err(msg.clone()));
            }
        }
    }
}
