//! What can go wrong keeping the read models.

use std::path::PathBuf;

use aftersales_store::{Position, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    #[error("reading the event log for the read models: {0}")]
    Store(#[from] StoreError),
    #[error("writing the read models' checkpoint {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the read models are at position {position}, past the log's head {head}: they were built from another log")]
    Ahead { position: Position, head: Position },
}
