//! Every integration test in one binary, so the suite links once: one module per area, sharing
//! `support` (the harness: PostgreSQL, S3, daemons, agents, fake GitHub and Platform).

mod support;

mod admin_api;
mod agents;
mod agents_hostile;
mod agents_more;
mod agents_revoked;
mod caches;
mod caches_workflow;
mod cli_sources;
mod config_errors;
mod github_app;
mod hostile_durability;
mod hostile_http;
mod hostile_lockfile;
mod http_core;
mod install;
mod live_logs;
mod local_sources;
mod migrations;
mod pg_harness;
mod pg_tls;
mod pipeline;
mod platform_link;
mod platform_relay;
mod platform_tls;
mod ready_and_secrets;
mod reload;
mod runs_cli;
mod runs_failures;
mod runs_logs;
mod runs_store;
mod storage_fs;
mod storage_s3;
mod webhook_faults;
mod webhooks;
