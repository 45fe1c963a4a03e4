//! Compiles `tests/lint_clean.rs` as a binary under its `#![deny(warnings, missing_docs,
//! unused_qualifications, clippy::pedantic)]`, so rustc's lints (dead code included) see the
//! generated code; clippy checks the same file as an integration test.
#![deny(warnings, missing_docs, unused_qualifications)]

#[path = "../../lint_clean.rs"]
mod lint_clean;

fn main() {
    lint_clean::demo();
}
