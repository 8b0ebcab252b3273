#![allow(dead_code)]
pub mod agent;
pub mod daemon;
pub mod fake_checks;
pub mod fake_github;
pub mod git;
pub mod lock;
pub mod pg;
pub mod platform;
pub mod s3;
pub mod storage;
pub mod tls;
pub mod webhook;
