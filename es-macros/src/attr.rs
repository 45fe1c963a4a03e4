//! Attribute parsing helpers shared by the three macros.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;

use crate::ctxt::Ctxt;

/// An attribute value together with the tokens it came from (for error spans).
pub struct WithSpan<T> {
    pub value: T,
    pub span: Span,
}

/// A value that may be set at most once.
pub struct Once<T> {
    name: &'static str,
    value: Option<WithSpan<T>>,
}

impl<T> Once<T> {
    pub fn new(name: &'static str) -> Self {
        Self { name, value: None }
    }

    /// Sets the value, or records a "duplicate" error spanned on the second occurrence.
    pub fn set(&mut self, cx: &mut Ctxt, span: Span, value: T) {
        if self.value.is_some() {
            cx.syn_error(syn::Error::new(
                span,
                format!("duplicate attribute `{}`", self.name),
            ));
        } else {
            self.value = Some(WithSpan { value, span });
        }
    }

    pub fn get(self) -> Option<WithSpan<T>> {
        self.value
    }
}

/// The error for a key the attribute does not know.
pub fn unknown_key(meta: &ParseNestedMeta<'_>, attribute: &str, expected: &[&str]) -> syn::Error {
    let key = meta
        .path
        .get_ident()
        .map_or_else(|| "?".to_owned(), ToString::to_string);
    meta.error(format!(
        "unknown attribute `{key}` in `#[{attribute}(...)]`; expected one of: {}",
        expected.join(", ")
    ))
}

/// Parses `= "some::path"` into a path (for `crate = "..."`).
pub fn parse_crate_path(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::Path> {
    let lit: syn::LitStr = meta.value()?.parse()?;
    lit.parse::<syn::Path>()
        .map_err(|_| syn::Error::new(lit.span(), "expected a path such as `::es_core`"))
}

/// Parses `= "Name"` and validates it as a stored name.
pub fn parse_stored_name(meta: &ParseNestedMeta<'_>, what: &str) -> syn::Result<syn::LitStr> {
    let lit: syn::LitStr = meta.value()?.parse()?;
    validate_stored_name(&lit.value(), what).map_err(|msg| syn::Error::new(lit.span(), msg))?;
    Ok(lit)
}

/// A stored name (event type, alias, aggregate type) lives forever in databases and logs:
/// keep it to one unambiguous token.
pub fn validate_stored_name(name: &str, what: &str) -> Result<(), String> {
    const RULE: &str = "it must start with an ASCII letter and contain only ASCII letters, digits, `_`, `-`, `.` and `:` (at most 128 characters)";
    if name.is_empty() {
        return Err(format!("{what} must not be empty; {RULE}"));
    }
    if name.len() > 128 {
        return Err(format!("{what} `{name}` is too long; {RULE}"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!("{what} `{name}` is not a valid stored name; {RULE}"))
    }
}

/// Rejects generic parameters: a stored type is one concrete type.
pub fn reject_generics(cx: &mut Ctxt, generics: &syn::Generics, what: &str) {
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        let tokens = match &generics.where_clause {
            Some(where_clause) if generics.params.is_empty() => where_clause.span(),
            _ => generics.span(),
        };
        cx.syn_error(syn::Error::new(
            tokens,
            format!(
                "generic {what}s are not supported: a {what} is stored under one name, so it must be one concrete type"
            ),
        ));
    }
}

/// The default path of the runtime crate in generated code.
pub fn default_crate_path() -> syn::Path {
    syn::parse_quote!(::es_core)
}
