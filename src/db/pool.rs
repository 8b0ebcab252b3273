//! A small blocking connection pool: `Mutex<state> + Condvar`, no helper threads. Connections are
//! opened lazily, handed out LIFO, and dropped instead of returned when they broke, so the pool
//! heals by itself when PostgreSQL restarts.

use std::{
    ops::{Deref, DerefMut},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use postgres::Client;

use super::{Connector, DbError};

#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    max: usize,
    acquire_timeout: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<Client>,
    /// Connections that exist: idle + handed out + being opened.
    open: usize,
    /// Threads waiting for a connection (metrics).
    waiting: usize,
}

impl Pool {
    pub fn new(connector: Connector, max: usize, acquire_timeout: Duration) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                connector,
                max: max.max(1),
                acquire_timeout,
                state: Mutex::new(State {
                    idle: Vec::new(),
                    open: 0,
                    waiting: 0,
                }),
                freed: Condvar::new(),
            }),
        }
    }

    /// A connection, waiting up to the acquire timeout for one to be free.
    pub fn get(&self) -> Result<PooledClient, DbError> {
        let deadline = Instant::now() + self.inner.acquire_timeout;
        let mut state = self.lock();
        loop {
            while let Some(client) = state.idle.pop() {
                if client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(self.wrap(client));
            }
            if state.open < self.inner.max {
                state.open += 1;
                drop(state);
                return match self.inner.connector.connect() {
                    Ok(client) => Ok(self.wrap(client)),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.inner.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                crate::metrics::hooks::db_error("pool_timeout");
                return Err(DbError::PoolTimeout);
            }
            state.waiting += 1;
            state = match self.inner.freed.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(poisoned) => poisoned.into_inner().0,
            };
            state.waiting -= 1;
        }
    }

    /// Runs `f` on a pooled connection; when the connection turns out to be broken (e.g. the
    /// server restarted since it was last used) it is thrown away and `f` runs once more on a new
    /// one. Use only for statements that are safe to repeat.
    pub fn with_retry<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut conn = self.get()?;
        match f(&mut conn) {
            Err(e) if conn.is_closed() => {
                log::debug!("database connection was closed ({e}); retrying on a new one");
                drop(conn);
                // A closed connection usually means the server restarted: the other idle ones
                // are dead too, so the retry must not pick one of them.
                self.close_idle();
                let mut conn = self.get()?;
                f(&mut conn)
            }
            other => other,
        }
    }

    /// `(in use, idle, waiting, size)` for `/metrics`.
    pub fn stats(&self) -> (usize, usize, usize, usize) {
        let state = self.lock();
        let idle = state.idle.len();
        (state.open - idle, idle, state.waiting, self.inner.max)
    }

    /// Closes idle connections (e.g. before exit).
    pub fn close_idle(&self) {
        let mut state = self.lock();
        let n = state.idle.len();
        state.idle.clear();
        state.open -= n;
    }

    fn wrap(&self, client: Client) -> PooledClient {
        PooledClient {
            client: Some(client),
            pool: self.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State inconsistent (plain push/pop/counter).
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A checked-out connection; goes back to the pool on drop unless it is closed.
pub struct PooledClient {
    client: Option<Client>,
    pool: Pool,
}

impl Deref for PooledClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl DerefMut for PooledClient {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let mut state = self.pool.lock();
            if client.is_closed() || std::thread::panicking() {
                state.open -= 1;
            } else {
                state.idle.push(client);
            }
            drop(state);
            self.pool.inner.freed.notify_one();
        }
    }
}
