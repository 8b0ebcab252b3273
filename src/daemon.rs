//! `kici-admin orchestrator run`: the daemon in the foreground. Boot order: validate config →
//! connect → migrate (or refuse when pending and auto-migrate is off) → bootstrap admin token →
//! listen. SIGTERM/SIGINT stop accepting and drain; SIGHUP is caught (it would otherwise kill the
//! process) and reloads nothing yet.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::{
    agent::{Hub, HubConfig},
    app::App,
    config::{default_blob_base_url, Config, Mode},
    crypto::SecretBox,
    db::{self, migrate, tokens::Bootstrap, Connector, Pool},
    github::api::GitHubApi,
    github::repo::InstallationTokens,
    http::server::{Limits, Server, ShutdownHandle},
    ingest::{Intake, Recorder},
    pipeline::{
        mint::Mint,
        process::{Deps as PipelineDeps, Pipeline},
    },
    platform::oidc::Minter,
    platform::{client::RelayConfig, Link},
    sources::{
        listen::{self, QueueSignal},
        registry::SourceRegistry,
    },
    storage::{Backend, OpenParams, Storage},
    Error,
};

const POOL_SIZE: usize = 16;
const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Two recorder connections: one batch commits while the next one gathers.
const RECORDER_THREADS: usize = 2;
/// Deliveries are processed (lock fetch, matching, planning) by this many threads.
const PIPELINE_WORKERS: usize = 2;
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

/// Agents hold one socket each: lift the soft open-files limit to the hard one (the usual soft
/// default of 1024 would stop the daemon short of a thousand agents).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

pub fn run() -> Result<(), Error> {
    let started = Instant::now();
    raise_fd_limit();
    let loaded = Config::from_env().map_err(|e| Error::Config(e.to_string()))?;
    crate::logging::init(loaded.config.log_level, loaded.config.log_format);
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    let config = Arc::new(loaded.config);
    crate::install_crypto_provider();
    log::info!(
        "Starting kici-orchestrator {} in {} mode",
        env!("CARGO_PKG_VERSION"),
        config.mode.as_str()
    );

    let connector = Connector::from_url(&config.database_url)?;
    let mut client = connector.connect()?;
    log::info!("Database connected");
    prepare_schema(&mut client, config.auto_migrate)?;
    announce_bootstrap(db::tokens::ensure_bootstrap_token(
        &mut client,
        config.bootstrap_admin_token.as_deref(),
    )?);
    // Jobs a previous process dispatched wait for their agents to re-register
    // (docs/agent-protocol.md, "Disconnect and recovery").
    let recovery_secs = config.agents.recovery_window.as_secs() as i64;
    let recovering = crate::runs::store::queue::recover_after_restart(&mut client, recovery_secs)?;
    if recovering > 0 {
        log::info!("{recovering} job(s) dispatched before the restart wait {recovery_secs} s for their agents");
    }
    drop(client);

    let secrets = SecretBox::new(config.secret_key.clone(), config.secret_key_old.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let registry = Arc::new(SourceRegistry::default());
    let queue_signal = Arc::new(QueueSignal::default());
    listen::start(
        &connector,
        secrets.clone(),
        registry.clone(),
        queue_signal.clone(),
        stop.clone(),
    )?;
    let recorder = Recorder::start(connector.clone(), RECORDER_THREADS);
    let pool = Pool::new(connector, POOL_SIZE, POOL_ACQUIRE_TIMEOUT);
    let server = Server::bind(
        SocketAddr::new(config.bind_address, config.port),
        Limits::default(),
    )
    .map_err(|e| {
        Error::Startup(format!(
            "cannot listen on {}:{}: {e} (set KICI_PORT to a free port)",
            config.bind_address, config.port
        ))
    })?;
    log::info!(
        "Listening on http://{}{}/ (ready in {} ms)",
        server.local_addr(),
        config.base_path,
        started.elapsed().as_millis()
    );
    let storage = open_storage(&config, server.local_addr().port())?;
    // Independent mode never talks to the Platform (docs/platform-protocol.md).
    let platform = (config.mode != Mode::Independent).then(|| Arc::new(Link::default()));
    watch_signals(server.shutdown_handle())?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let minter = match (&config.platform_url, &config.platform_token) {
        (Some(url), Some(token)) => Some(Minter::new(url, token, &config.instance_id)),
        _ => None,
    };
    let hub = Arc::new(Hub::new(
        pool.clone(),
        storage.clone(),
        platform.clone(),
        minter,
        HubConfig {
            ack_timeout: config.agents.ack_timeout,
            recovery_window: config.agents.recovery_window,
            auth_required: config.agents.auth_required,
            instance_id: config.instance_id.clone(),
        },
    ));
    hub.set_shutdown(server.shutdown_handle());
    // Run events: metrics count them; the Platform status forwarder forwards them.
    hub.events.subscribe(crate::metrics::hooks::run_events());
    if let Some(link) = &platform {
        hub.events.subscribe(crate::platform::status::forwarder(
            pool.clone(),
            link.clone(),
            config.instance_id.clone(),
        ));
    }
    // GitHub check runs: the subscriber only wakes the reporter (started below).
    let check_wake = Arc::new(crate::checks::Wake::default());
    hub.events
        .subscribe(crate::checks::subscriber(check_wake.clone()));
    let waker = hub.clone();
    queue_signal.set(move || waker.wake());
    hub.start_dispatcher(stop.clone());
    let github = GitHubApi::new(&config.github_api_url);
    let tokens = Arc::new(InstallationTokens::default());
    let mint = Mint {
        pool: pool.clone(),
        secrets: secrets.clone(),
        github: github.clone(),
        tokens: tokens.clone(),
        registry: registry.clone(),
    };
    // Jobs' repository tokens are minted when they are sent, never stored with the job.
    hub.set_credentials(Arc::new(mint.clone()));
    hub.set_job_secrets(crate::secrets::dispatch::JobSecrets::new(
        secrets.clone(),
        &config.instance_id,
    ));
    let reporter = crate::checks::reporter::Deps {
        pool: pool.clone(),
        mint,
        github: github.clone(),
        storage: storage.clone(),
        settings: config.checks.clone(),
    };
    if let Err(e) =
        crate::checks::reporter::start(Arc::new(reporter), check_wake.clone(), stop.clone())
    {
        log::error!("cannot start the check reporter thread: {e}");
    }
    let pipeline = Arc::new(Pipeline::start(
        Arc::new(PipelineDeps {
            pool: pool.clone(),
            secrets: secrets.clone(),
            github: github.clone(),
            tokens,
            locks: Default::default(),
            registry: registry.clone(),
            wake: {
                let hub = hub.clone();
                Arc::new(move || hub.wake())
            },
            events: hub.events.clone(),
            max_jobs_per_run: config.max_jobs_per_run,
            caches: storage.clone().map(|storage| crate::caches::CachePlanning {
                storage,
                build_jobs: config.cache_build_jobs,
            }),
            checks: Some(check_wake),
        }),
        PIPELINE_WORKERS,
    ));
    let app = Arc::new(App {
        secrets,
        github,
        config: config.clone(),
        pool: pool.clone(),
        started,
        intake: Intake::new(
            registry.clone(),
            recorder,
            pipeline.clone(),
            config.event_log_max_payload_bytes,
        ),
        registry,
        storage,
        platform: platform.clone(),
        agents: hub,
        pipeline,
    });
    if let (Some(link), Some(url), Some(token)) =
        (platform, &config.platform_url, &config.platform_token)
    {
        let relay = RelayConfig {
            url: url.clone(),
            token: token.clone(),
            instance_id: config.instance_id.clone(),
            mode: config.mode.as_str(),
        };
        log::info!(
            "Connecting to the Platform at {url} (instance {})",
            config.instance_id
        );
        crate::platform::client::start(app.clone(), link, relay, stop.clone());
    }
    housekeeping(app.clone(), stop.clone());
    server.run(app);
    stop.store(true, Ordering::SeqCst);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    pool.close_idle();
    log::info!("Shut down cleanly");
    Ok(())
}

/// The configured object storage, or `None` (caches off, said once). A filesystem folder is
/// created if missing and must be writable; S3 needs credentials.
fn open_storage(config: &Config, port: u16) -> Result<Option<Arc<Storage>>, Error> {
    let Some(cfg) = &config.storage else {
        log::info!(
            "No object storage configured (KICI_STORAGE_TYPE unset): caches are off, agents clone \
             and install dependencies on every job"
        );
        return Ok(None);
    };
    let env = |name: &str| std::env::var(name).ok();
    let params = OpenParams {
        ttl_days: config.cache_ttl_days,
        secret_key: Some(&config.secret_key),
        secret_key_old: config.secret_key_old.as_ref(),
        default_base_url: default_blob_base_url(port, &config.base_path),
        env: &env,
    };
    let storage = Storage::open(cfg, &params).map_err(Error::Config)?;
    if let Backend::Fs(f) = storage.backend() {
        f.prepare().map_err(|e| {
            Error::Startup(format!(
                "{e} (KICI_STORAGE_FS_PATH must be a folder the orchestrator's user can write)"
            ))
        })?;
    }
    log::info!(
        "{} (cache TTL {} days)",
        storage.describe(),
        config.cache_ttl_days
    );
    Ok(Some(Arc::new(storage)))
}

/// Auto-migrate, or with `KICI_AUTO_MIGRATE=false` refuse to start on a schema that is behind.
fn prepare_schema(client: &mut postgres::Client, auto_migrate: bool) -> Result<(), Error> {
    let statuses = migrate::status(client)?;
    migrate::check_consistent(&statuses)?;
    let pending: Vec<&str> = statuses
        .iter()
        .filter(|s| s.status == migrate::State::Pending)
        .map(|s| s.name.as_str())
        .collect();
    if pending.is_empty() {
        log::info!("Database schema is up to date");
        return Ok(());
    }
    if auto_migrate {
        migrate::migrate(client)?;
        return Ok(());
    }
    log::info!("Auto-migrate disabled (KICI_AUTO_MIGRATE=false)");
    Err(Error::Startup(format!(
        "{} migration(s) pending ({}) and KICI_AUTO_MIGRATE=false: run `kici-admin db migrate --database-url <url>` first, \
         or remove KICI_AUTO_MIGRATE",
        pending.len(),
        pending.join(", ")
    )))
}

fn announce_bootstrap(outcome: Bootstrap) {
    match outcome {
        Bootstrap::Generated(token) => {
            log::info!("Bootstrap admin token generated (printed once on stdout; store it now)");
            // stdout, not the log: the one place the token is ever shown.
            println!("\n  KICI Admin Token: {token}\n");
        }
        Bootstrap::FromEnv { revoked: false } => log::info!("Bootstrap admin token from KICI_BOOTSTRAP_ADMIN_TOKEN is active"),
        Bootstrap::FromEnv { revoked: true } => log::warn!(
            "KICI_BOOTSTRAP_ADMIN_TOKEN belongs to the revoked 'bootstrap' token: it will not authenticate; \
             create a new owner token or remove the variable"
        ),
        Bootstrap::Existing => log::debug!("Admin tokens exist; no bootstrap token generated"),
    }
}

fn watch_signals(stop: ShutdownHandle) -> Result<(), Error> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::Startup(format!("cannot install signal handlers: {e}")))?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                match sig {
                    SIGHUP => log::info!(
                        "SIGHUP received: nothing to reload yet (sources reload by themselves)"
                    ),
                    _ => {
                        log::info!(
                            "{} received: draining in-flight requests",
                            if sig == SIGTERM { "SIGTERM" } else { "SIGINT" }
                        );
                        stop.shutdown();
                    }
                }
            }
        })
        .map_err(|e| Error::Startup(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

/// Expires dedup entries and idle rate-limit windows every minute. Under systemd with
/// `WatchdogSec=` it also sends WATCHDOG=1 at half the interval: from this loop rather than a
/// thread of its own, so a wedged housekeeping loop gets the daemon restarted.
fn housekeeping(app: Arc<App>, stop: Arc<AtomicBool>) {
    let watchdog = sd_notify::watchdog_enabled().map(|interval| interval / 2);
    let tick = watchdog.map_or(Duration::from_millis(500), |half| {
        half.min(Duration::from_millis(500))
    });
    let stopping = stop.clone();
    let spawned = crate::supervise::spawn(
        "housekeeping",
        move || stopping.load(Ordering::SeqCst),
        move || {
            let mut last = Instant::now();
            let mut pinged = Instant::now();
            // At boot, not a minute later: deliveries a previous process accepted but never
            // claimed, or whose claims have expired, go on at once.
            app.pipeline.sweep(&app.pool);
            // Step logs a previous process left in the database (docs/agent-protocol.md, "Logs").
            let logs = || {
                crate::agent::logs::housekeep(
                    &app.pool,
                    app.storage.as_deref(),
                    app.config.log_retention_days,
                )
            };
            logs();
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(tick);
                if watchdog.is_some_and(|half| pinged.elapsed() >= half) {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    pinged = Instant::now();
                }
                if last.elapsed() < HOUSEKEEPING_EVERY {
                    continue;
                }
                last = Instant::now();
                app.intake.sweep_limits(last);
                app.pipeline.sweep(&app.pool);
                logs();
                match app.pool.with_retry(db::events::expire_dedup) {
                    Ok(0) => {}
                    Ok(n) => log::debug!("expired {n} dedup entries"),
                    Err(e) => log::warn!("expiring dedup entries failed: {e}"),
                }
            }
        },
    );
    if let Err(e) = spawned {
        log::error!("cannot start the housekeeping thread: {e}");
    }
}
