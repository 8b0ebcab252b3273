//! tmp
pub mod dispatch;
pub mod resolve;
