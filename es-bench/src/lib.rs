//! Shared pieces of the es-bench binaries.
//!
//! * [`bank`]: the bank-account domain written three ways: by hand over JSON strings, for
//!   cqrs-es 0.5, and for es.
//! * [`measure`]: medians and the formatting of times, rates and ratios.
//! * [`stores`]: which es stores to run, temporary SQLite files and PostgreSQL schemas that
//!   clean up after themselves.
//! * [`quiet`]: points stdout at `/dev/null` while cqrs-es runs (its `MemStore` prints a line
//!   per load and per commit).
//! * [`heap`]: a counting global allocator for the `scale` binary's memory figures.
//! * [`report`]: the header every report starts with (date, nproc, command, es commit).

pub mod bank;
pub mod heap;
pub mod measure;
pub mod quiet;
pub mod report;
pub mod stores;
