//! mfactl as a library: the pure core (`manifest`, `model`, `plan`, `policy`, `render`, `audit`)
//! inside a thin shell (`commands`, `sources`, `store`, `watch`). The binary in `main.rs` only
//! parses the command line and maps the outcome to an exit code; the fuzz targets call the parsers
//! directly.

pub mod audit;
pub mod cli;
pub mod commands;
pub mod error;
pub mod git;
pub mod manifest;
pub mod model;
pub mod plan;
pub mod policy;
pub mod render;
pub mod saved;
pub mod sources;
pub mod store;
pub mod watch;
