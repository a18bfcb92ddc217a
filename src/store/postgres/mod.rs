//! Placeholder until the PostgreSQL backend lands.
use super::{Backend, Init, Result};
use std::time::Duration;

pub fn open(url: &str, _lock_timeout: Duration) -> Result<Box<dyn Backend>> {
    Err(super::StoreError::Invalid(format!("{url}: not yet")))
}

pub fn init(url: &str, _lock_timeout: Duration) -> Result<(Box<dyn Backend>, Init)> {
    Err(super::StoreError::Invalid(format!("{url}: not yet")))
}
