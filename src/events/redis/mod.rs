//! The fleet's store on Redis (placeholder while it is being written).

use super::backend::Backend;
use super::error::StoreError;
use super::model::StoreOptions;
use crate::config::Config;

pub struct Redis;

impl Redis {
    pub fn open(_cfg: &Config, _opts: StoreOptions) -> Result<Box<dyn Backend>, StoreError> {
        Err(StoreError::CommitAbandoned)
    }
}
