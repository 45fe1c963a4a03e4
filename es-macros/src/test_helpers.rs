//! Helpers for the expansion unit tests: run an `expand` function on tokens and look at its
//! errors or at its output as compact text.

use proc_macro2::TokenStream;

/// Every message of a combined error, in order.
pub fn messages(error: &syn::Error) -> Vec<String> {
    error.clone().into_iter().map(|e| e.to_string()).collect()
}

/// The messages of an expansion expected to fail.
#[track_caller]
pub fn errors(result: syn::Result<TokenStream>) -> Vec<String> {
    match result {
        Ok(tokens) => panic!("expected errors, got:\n{tokens}"),
        Err(error) => messages(&error),
    }
}

/// The output of an expansion expected to succeed, as compact text.
#[track_caller]
pub fn output(result: syn::Result<TokenStream>) -> String {
    match result {
        Ok(tokens) => compact(&tokens),
        Err(error) => panic!("expected an expansion, got errors: {:?}", messages(&error)),
    }
}

/// Tokens as text without whitespace, so assertions do not depend on token spacing.
pub fn compact(tokens: &TokenStream) -> String {
    tokens
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// Asserts that exactly `expected.len()` errors were reported, the n-th containing the n-th
/// expected fragment.
#[track_caller]
pub fn assert_errors(actual: &[String], expected: &[&str]) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "expected {} errors, got {actual:#?}",
        expected.len()
    );
    for (message, fragment) in actual.iter().zip(expected) {
        assert!(
            message.contains(fragment),
            "expected an error containing {fragment:?}, got {message:?}"
        );
    }
}
