//! Error collection: every problem in the input is reported in one compile.

use std::fmt::Display;

use quote::ToTokens;

/// Collects errors while parsing and validating; [`Ctxt::check`] combines them.
#[derive(Default)]
pub struct Ctxt {
    errors: Option<syn::Error>,
}

impl Ctxt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error spanned on `tokens`.
    pub fn error_spanned_by(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.syn_error(syn::Error::new_spanned(tokens, message));
    }

    /// Records an error produced by syn.
    pub fn syn_error(&mut self, error: syn::Error) {
        match &mut self.errors {
            Some(errors) => errors.combine(error),
            None => self.errors = Some(error),
        }
    }

    pub fn has_errors(&self) -> bool {
        self.errors.is_some()
    }

    /// `Ok` if nothing was recorded, else every recorded error combined.
    pub fn check(self) -> syn::Result<()> {
        match self.errors {
            Some(errors) => Err(errors),
            None => Ok(()),
        }
    }
}
