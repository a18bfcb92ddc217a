//! mfactl as a library, in five layers; each imports only the layers below it.
//!
//! 1. The ground floor, [`util`]: escaping, hex, the timestamp formatter. Imports nothing of ours.
//! 2. The pure core: [`model`], [`manifest`], [`policy`], [`plan`] (the decision), [`audit`],
//!    [`directory`] (the directory format), [`examples`] (the built-in example tenant), [`saved`] (the saved-plan format) and [`render`]. No
//!    I/O, no clock, no SQL.
//! 3. The edges: [`store`] (all SQL), [`sources`] (manifest and policy files), [`credentials`]
//!    (the temporary-password files) and [`git`] (who signed the commit that last changed a file).
//! 4. [`ops`]: the workflows the commands and the daemon share, returning values and a typed
//!    [`error::Failure`], never printing.
//! 5. The shell: [`cli`], [`commands`] (one file per command), [`watch`] (the daemon) and the
//!    [`printer`] that owns stdout and stderr; `main.rs` parses, runs, and exits with the code.
//!
//! The fuzz targets call the parsers of the core directly.

// 1. Ground floor.
pub mod util;

// 2. Pure core.
pub mod audit;
pub mod directory;
pub mod examples;
pub mod manifest;
pub mod model;
pub mod plan;
pub mod policy;
pub mod render;
pub mod saved;

// 3. Edges.
pub mod credentials;
pub mod git;
pub mod sources;
pub mod store;

// 4. Workflows.
pub mod error;
pub mod ops;

// 5. Shell.
pub mod cli;
pub mod commands;
pub mod printer;
pub mod watch;
