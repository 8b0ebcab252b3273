//! The reporter thread (docs/check-runs.md, "The reporter"): wakes for runs with news (run
//! events) and every [`SWEEP_EVERY`] for every GitHub run not settled, reads the run's rows,
//! and for each check run whose desired state differs from what GitHub accepted last, sends
//! one create or update, in order: a run's check run is created before its jobs' and completed
//! after them. In-progress updates of one check run go at most once per update interval; a
//! newer state replaces an unsent older one. Temporary failures back off per run, rate limits
//! pause the App, a missing `checks: write` parks the source with one warning.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use super::{
    render::{self, CheckState, RUN_KEY},
    retry::{self, Verdict},
    store, Wake,
};
use crate::{
    config::ChecksSettings,
    db::Pool,
    github::{
        checks as api,
        repo::{repo_part, TokenError, TokenScope},
        GitHubApi, GitHubError,
    },
    pipeline::mint::{Mint, MintError},
    storage::Storage,
};

/// How often the reporter looks for runs whose reports are incomplete (the safety net behind
/// the events: after a restart, a lost wake-up, a database hiccup).
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Runs looked at per sweep.
const SWEEP_LIMIT: i64 = 500;
/// How long after a run's news the reporter looks at it (see `Reporter::woken`).
const SETTLE: Duration = Duration::from_millis(25);

pub struct Deps {
    pub pool: Pool,
    pub mint: Mint,
    pub github: GitHubApi,
    pub storage: Option<Arc<Storage>>,
    pub settings: ChecksSettings,
}

/// Starts the reporter under the supervisor; it ends when `stop` is set.
pub fn start(deps: Arc<Deps>, wake: Arc<Wake>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let stopping = stop.clone();
    crate::supervise::spawn(
        "check-reporter",
        move || stopping.load(Ordering::SeqCst),
        move || Reporter::new(deps.clone()).run(&wake, &stop),
    )
}

/// What to do with a run after a look at it.
enum Next {
    /// Nothing to send now; look again on its next event (or sweep).
    Idle,
    /// Every report is delivered and the run has ended.
    Settled,
    /// The run's source reports nowhere (generic, local): its events need not wake us again.
    Nowhere,
    /// Look again at this time.
    At(Instant),
}

struct Reporter {
    deps: Arc<Deps>,
    /// Runs to look at, and when.
    due: HashMap<String, Instant>,
    /// Failed attempts in a row per run (for the backoff).
    attempts: HashMap<String, u32>,
    /// Routing keys rate limited until then.
    paused: HashMap<String, Instant>,
    /// Routing keys whose App lacks `checks: write`, left alone until then.
    parked: HashMap<String, Instant>,
    warned: HashSet<String>,
    /// When each check run (run id, key) was last reported by this process.
    last_sent: HashMap<(String, String), Instant>,
}

impl Reporter {
    fn new(deps: Arc<Deps>) -> Reporter {
        Reporter {
            deps,
            due: HashMap::new(),
            attempts: HashMap::new(),
            paused: HashMap::new(),
            parked: HashMap::new(),
            warned: HashSet::new(),
            last_sent: HashMap::new(),
        }
    }

    fn run(&mut self, wake: &Wake, stop: &AtomicBool) {
        let mut last_sweep: Option<Instant> = None;
        let mut cursor: Option<store::SweepCursor> = None;
        while !stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if last_sweep.is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY) {
                last_sweep = Some(now);
                let after = cursor.take();
                match self
                    .deps
                    .pool
                    .with_retry(|c| store::unsettled(c, after.as_ref(), SWEEP_LIMIT))
                {
                    Ok(page) => {
                        // A full page: the next sweep goes on after it, a second from now.
                        if page.len() as i64 == SWEEP_LIMIT {
                            cursor = page.last().map(|(_, c)| c.clone());
                            last_sweep = now.checked_sub(SWEEP_EVERY - Duration::from_secs(1));
                        }
                        for (id, _) in page {
                            self.due.entry(id).or_insert(now);
                        }
                    }
                    Err(e) => {
                        log::warn!("check reports: looking for undelivered reports failed: {e}")
                    }
                }
            }
            for id in wake.take(Duration::ZERO) {
                self.woken(id, now);
            }
            let unparked = wake.take_unparked();
            if !unparked.is_empty() {
                self.unpark(&unparked, now);
                // Runs of those sources that are not due here (another process parked them, or
                // they were never looked at) come back with the sweep, now.
                last_sweep = None;
                cursor = None;
                continue;
            }
            let mut ready: Vec<(Instant, String)> = self
                .due
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(id, at)| (*at, id.clone()))
                .collect();
            ready.sort();
            for (_, id) in ready {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                self.due.remove(&id);
                match self.look(&id) {
                    Next::Idle => {}
                    Next::Settled => {
                        self.attempts.remove(&id);
                        self.last_sent.retain(|(r, _), _| r != &id);
                    }
                    Next::Nowhere => wake.reports_nowhere(&id),
                    Next::At(at) => {
                        self.due.insert(id, at);
                    }
                }
            }
            let next = self.due.values().min().copied();
            let wait = next.map_or(Duration::from_millis(500), |t| {
                t.saturating_duration_since(Instant::now())
            });
            let woken = wake.take(wait.min(Duration::from_millis(500)));
            let now = Instant::now();
            for id in woken {
                self.woken(id, now);
            }
        }
    }

    /// A run had news: look at it after [`SETTLE`], so the burst of events around one change
    /// (a run's `pending`, its jobs' claims) is one look, taken after the dispatch it rode on.
    /// A run backing off keeps its time (news does not make GitHub healthier). Runs of sources
    /// that report nowhere do not get here (`Wake::reports_nowhere`).
    fn woken(&mut self, id: String, now: Instant) {
        if self.attempts.contains_key(&id) {
            return;
        }
        let at = now + SETTLE;
        let due = self.due.entry(id).or_insert(at);
        *due = (*due).min(at);
    }

    /// New permissions were accepted for these sources: they are no longer parked, a missing
    /// permission warns again, and every run waiting for later is looked at now (the ones of
    /// other sources find their pause or backoff again and go back to waiting).
    fn unpark(&mut self, routing_keys: &std::collections::BTreeSet<String>, now: Instant) {
        for key in routing_keys {
            if self.parked.remove(key).is_some() {
                log::info!(
                    "GitHub source {key}: the installation accepted new permissions; reporting \
                     its check runs again"
                );
            }
            self.warned.remove(key);
        }
        for at in self.due.values_mut() {
            *at = (*at).min(now);
        }
    }

    fn retry_later(&mut self, run_id: &str) -> Next {
        let attempt = self.attempts.entry(run_id.to_owned()).or_insert(0);
        let wait = retry::backoff(*attempt, self.deps.settings.max_backoff);
        *attempt = attempt.saturating_add(1);
        Next::At(Instant::now() + wait)
    }

    /// One look at a run: sends what GitHub has not been told yet.
    fn look(&mut self, run_id: &str) -> Next {
        let deps = self.deps.clone();
        let storage = deps.storage.as_deref();
        let loaded = match deps
            .pool
            .with_retry(|c| store::load(c, run_id, storage, true))
        {
            Ok(Some(l)) => l,
            Ok(None) => return Next::Settled,
            Err(e) => {
                log::warn!("check reports for run {run_id}: reading the run failed: {e}");
                return self.retry_later(run_id);
            }
        };
        let target = &loaded.target;
        // Generic and local sources report nowhere (`runs show` renders the same summary).
        if target.provider != "github" {
            return Next::Nowhere;
        }
        let Some(installation) = target
            .installation_id
            .filter(|_| !target.repo.is_empty() && !target.sha.is_empty())
        else {
            log::debug!("run {run_id} has no repository, commit or installation to report to");
            return self.settle_if_ended(run_id, &loaded.facts.status);
        };
        let now = Instant::now();
        for blocked in [&self.paused, &self.parked] {
            if let Some(until) = blocked.get(&target.routing_key).filter(|u| **u > now) {
                return Next::At(*until);
            }
        }
        let desired = render::desired(&loaded.facts);
        let run_created = loaded
            .sent
            .get(RUN_KEY)
            .is_some_and(|s| s.check_run_id.is_some());
        // Create the run's check run first; complete it last.
        let mut order: Vec<&CheckState> = desired.iter().filter(|d| d.key != RUN_KEY).collect();
        if run_created {
            order.push(&desired[0]);
        } else {
            order.insert(0, &desired[0]);
        }
        let details = render::details_url(deps.settings.run_url_template.as_deref(), run_id);
        let mut token: Option<String> = None;
        let mut later: Option<Instant> = None;
        for state in order {
            let sent = loaded.sent.get(&state.key).cloned().unwrap_or_default();
            let hash = state.hash();
            if sent.hash.as_deref() == Some(hash.as_str()) {
                continue;
            }
            let since = self
                .last_sent
                .get(&(run_id.to_owned(), state.key.clone()))
                .map(|t| now.duration_since(*t));
            if let Some(wait) = retry::coalesce_wait(
                sent.status.as_deref(),
                state.status,
                since,
                deps.settings.update_interval,
            ) {
                later = Some(later.map_or(now + wait, |l| l.min(now + wait)));
                continue;
            }
            if token.is_none() {
                match self.token(run_id, target, installation) {
                    Ok(t) => token = Some(t),
                    Err(next) => return next,
                }
            }
            let token = token.as_deref().unwrap_or_default();
            let body = state.body(run_id, details.as_deref());
            let sent_id = sent.check_run_id;
            let result = match sent_id {
                Some(id) => api::update(&deps.github, token, &target.repo, id, &body),
                None => api::create(&deps.github, token, &target.repo, &target.sha, &body),
            };
            let reply = match result {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("check run {} of run {run_id}: {e}; retrying", state.name);
                    return self.retry_later(run_id);
                }
            };
            let now_unix = jiff::Timestamp::now().as_second();
            match retry::classify(&reply.answer, sent_id.is_some(), now_unix) {
                Verdict::Done => {
                    let id = sent_id.or_else(|| reply.check_run_id());
                    let recorded = deps.pool.with_retry(|c| {
                        store::record_sent(
                            c,
                            run_id,
                            &state.key,
                            &state.name,
                            id,
                            state.status,
                            &hash,
                        )
                    });
                    if let Err(e) = recorded {
                        log::warn!(
                            "check run {} of run {run_id} sent but not recorded: {e}",
                            state.name
                        );
                        return self.retry_later(run_id);
                    }
                    self.last_sent
                        .insert((run_id.to_owned(), state.key.clone()), Instant::now());
                    if self.warned.remove(&target.routing_key) {
                        log::info!(
                            "GitHub source {}: check runs are accepted again",
                            target.routing_key
                        );
                    }
                }
                Verdict::Gone => {
                    log::info!(
                        "check run {} of run {run_id} is gone on GitHub; creating it again",
                        state.name
                    );
                    if let Err(e) = deps
                        .pool
                        .with_retry(|c| store::forget_check_run(c, run_id, &state.key))
                    {
                        log::warn!("check reports for run {run_id}: {e}");
                    }
                    return Next::At(Instant::now());
                }
                Verdict::Refused => {
                    let why = format!("HTTP {}: {}", reply.answer.status, reply.answer.message);
                    log::warn!(
                        "GitHub refused check run {} of run {run_id} ({why}); not retried",
                        state.name
                    );
                    let recorded = deps.pool.with_retry(|c| {
                        store::record_refused(
                            c,
                            run_id,
                            &state.key,
                            &state.name,
                            state.status,
                            &hash,
                            &why,
                        )
                    });
                    if let Err(e) = recorded {
                        log::warn!("check reports for run {run_id}: {e}");
                    }
                }
                Verdict::Retry => {
                    if reply.answer.status == 401 {
                        deps.mint.tokens.forget(token);
                    }
                    log::warn!(
                        "check run {} of run {run_id}: GitHub answered HTTP {} ({}); retrying",
                        state.name,
                        reply.answer.status,
                        reply.answer.message
                    );
                    return self.retry_later(run_id);
                }
                Verdict::RateLimited(wait) => return self.pause(&target.routing_key, wait),
                Verdict::MissingPermission => {
                    return self.park(&target.routing_key, &target.repo, &reply.answer.message)
                }
            }
        }
        self.attempts.remove(run_id);
        if let Some(at) = later {
            return Next::At(at);
        }
        if desired[0].status == "completed" {
            return self.settle_if_ended(run_id, &loaded.facts.status);
        }
        Next::Idle
    }

    fn settle_if_ended(&mut self, run_id: &str, status: &str) -> Next {
        if !matches!(status, "success" | "failed" | "cancelled") {
            return Next::Idle;
        }
        match self.deps.pool.with_retry(|c| store::settle(c, run_id)) {
            Ok(()) => Next::Settled,
            Err(e) => {
                log::warn!("check reports for run {run_id}: {e}");
                self.retry_later(run_id)
            }
        }
    }

    /// An installation token that may write checks to the run's repository.
    fn token(
        &mut self,
        run_id: &str,
        target: &store::Target,
        installation: u64,
    ) -> Result<String, Next> {
        let scope = TokenScope {
            repository: repo_part(&target.repo).to_owned(),
            permissions: BTreeMap::from([("checks".to_owned(), "write".to_owned())]),
        };
        match self
            .deps
            .mint
            .try_token(&target.routing_key, installation, &scope)
        {
            Ok(t) => Ok(t),
            Err(MintError::Token(TokenError::Api {
                source: GitHubError::Rejected { status, message },
                ..
            })) if retry::token_refusal_is_permission(status, &message) => {
                Err(self.park(&target.routing_key, &target.repo, &message))
            }
            Err(MintError::Token(TokenError::Api {
                source: GitHubError::Rejected { status, message },
                ..
            })) if status == 403 || status == 429 => {
                let answer = retry::Answer {
                    status,
                    message,
                    ..retry::Answer::default()
                };
                let wait = retry::rate_limit_wait(&answer, jiff::Timestamp::now().as_second())
                    .unwrap_or(retry::SECONDARY_DEFAULT_WAIT);
                Err(self.pause(&target.routing_key, wait))
            }
            Err(MintError::Setup(m)) => {
                if self.warned.insert(target.routing_key.clone()) {
                    log::warn!("check runs for {} cannot be reported: {m}", target.repo);
                }
                let until = Instant::now() + self.deps.settings.permission_retry;
                self.parked.insert(target.routing_key.clone(), until);
                Err(Next::At(until))
            }
            Err(e) => {
                log::warn!(
                    "check runs for {}: no installation token ({e}); retrying",
                    target.repo
                );
                Err(self.retry_later(run_id))
            }
        }
    }

    fn pause(&mut self, routing_key: &str, wait: Duration) -> Next {
        log::info!(
            "GitHub rate limits check runs of source {routing_key}: pausing its reports for {} s",
            wait.as_secs_f64().ceil()
        );
        let until = Instant::now() + wait;
        self.paused.insert(routing_key.to_owned(), until);
        Next::At(until)
    }

    /// The App may not write check runs: one warning per source, then its reports wait.
    fn park(&mut self, routing_key: &str, repo: &str, message: &str) -> Next {
        let retry = self.deps.settings.permission_retry;
        if self.warned.insert(routing_key.to_owned()) {
            log::warn!(
                "GitHub source {routing_key}: the App may not write check runs to {repo} (GitHub: \
                 {message}). Grant the App the repository permission `checks: write` (App \
                 settings → Permissions & events → Checks: Read and write) and accept it on the \
                 installation; reports for this source are retried every {} s until then",
                retry.as_secs()
            );
        }
        let until = Instant::now() + retry;
        self.parked.insert(routing_key.to_owned(), until);
        Next::At(until)
    }
}
