//! A small blocking connection pool: `Mutex<state> + Condvar`, no helper threads. Connections are
//! opened lazily, handed out LIFO, and dropped instead of returned when they broke, so the pool
//! heals by itself when PostgreSQL restarts.

use std::{
    collections::HashMap,
    ops::{Deref, DerefMut},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use postgres::{Client, Statement};

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
    idle: Vec<Conn>,
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
            while let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(self.wrap(conn));
            }
            if state.open < self.inner.max {
                state.open += 1;
                drop(state);
                return match self.inner.connector.connect() {
                    Ok(client) => Ok(self.wrap(Conn {
                        client,
                        statements: HashMap::new(),
                    })),
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
        self.with_retry_pooled(|c| f(c))
    }

    /// [`Pool::with_retry`] for code that keeps statements prepared on the connection
    /// ([`PooledClient::prepared`]).
    pub fn with_retry_pooled<T>(
        &self,
        mut f: impl FnMut(&mut PooledClient) -> Result<T, DbError>,
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

    fn wrap(&self, conn: Conn) -> PooledClient {
        PooledClient {
            conn: Some(conn),
            pool: self.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State inconsistent (plain push/pop/counter).
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection and the statements prepared on it (see [`PooledClient::prepared`]).
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// At most this many statements stay prepared per connection (a bound, not a working size: the
/// hot statements are a handful).
const MAX_PREPARED: usize = 64;

/// A checked-out connection; goes back to the pool on drop unless it is closed.
pub struct PooledClient {
    conn: Option<Conn>,
    pool: Pool,
}

impl PooledClient {
    /// `sql` prepared on this connection once and kept with it: later calls skip the prepare
    /// round trip, and PostgreSQL may reuse the statement's plan instead of planning it each
    /// time. For the statements on the dispatch path, which run thousands of times.
    pub fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        let conn = self.conn.as_mut().expect("present until drop");
        if let Some(statement) = conn.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = conn.client.prepare(sql)?;
        if conn.statements.len() >= MAX_PREPARED {
            conn.statements.clear();
        }
        conn.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl Deref for PooledClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.conn.as_ref().expect("present until drop").client
    }
}

impl DerefMut for PooledClient {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.conn.as_mut().expect("present until drop").client
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut state = self.pool.lock();
            if conn.client.is_closed() || std::thread::panicking() {
                state.open -= 1;
            } else {
                state.idle.push(conn);
            }
            drop(state);
            self.pool.inner.freed.notify_one();
        }
    }
}
