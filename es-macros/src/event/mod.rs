//! `#[derive(Event)]`: stored name, schema version, aliases and the upcaster chain.

use proc_macro2::{Span, TokenStream};
use quote::quote;

use crate::attr;
use crate::ctxt::Ctxt;
use crate::symbol::*;

mod check;
mod generate;
mod parse;
#[cfg(test)]
mod tests;

use check::{check_shape, validate};
use generate::generate;
use parse::parse_attrs;

/// One `upcast(from = N, with = f | via = T)` step.
pub(super) struct Step {
    pub(super) from: u32,
    pub(super) from_span: Span,
    pub(super) kind: StepKind,
}

pub(super) enum StepKind {
    /// A JSON function `fn(Value) -> Result<Value, UpcastError>`; the span is the `with` key's.
    With(syn::Path, Span),
    /// An older struct, converted with `From` into the next version's type.
    Via(syn::Type),
}

/// The parsed `#[event(...)]` attributes.
pub(super) struct EventAttrs {
    pub(super) name: Option<syn::LitStr>,
    pub(super) version: u32,
    pub(super) version_span: Option<Span>,
    pub(super) steps: Vec<Step>,
    pub(super) aliases: Vec<syn::LitStr>,
    pub(super) krate: syn::Path,
    /// False when a `version` or `upcast(...)` could not be read: the chain checks would
    /// then report follow-on errors about steps the user did write.
    pub(super) chain_known: bool,
}

pub fn expand(input: &syn::DeriveInput) -> syn::Result<TokenStream> {
    let mut cx = Ctxt::new();
    check_shape(&mut cx, input);
    let attrs = parse_attrs(&mut cx, input);
    attr::reject_misplaced(&mut cx, &input.data, EVENT, "event");
    if let syn::Data::Enum(data) = &input.data {
        if data.variants.is_empty() {
            let (enum_token, ident) = (&data.enum_token, &input.ident);
            cx.error_spanned_by(
                quote!(#enum_token #ident),
                format!(
                    "an event enum needs at least one variant: `{ident}` has none, so it could never be recorded; add a variant or make it a struct"
                ),
            );
        }
    }
    validate(&mut cx, &attrs, &input.ident);
    cx.check()?;
    Ok(generate(input, &attrs))
}

/// What to emit next to the errors when [`expand`] fails: a minimal `Event` impl, so the
/// aggregates using this event do not add "`X` is not an event" to the real error.
pub fn fallback(input: &syn::DeriveInput) -> TokenStream {
    let mut cx = Ctxt::new();
    check_shape(&mut cx, input);
    if cx.has_errors() {
        return TokenStream::new();
    }
    let attrs = parse_attrs(&mut cx, input);
    let krate = &attrs.krate;
    let ident = &input.ident;
    let name = attr::default_stored_name(ident);
    let core = quote!(#krate::__private::core);
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #krate::Event for #ident {
                const EVENT_TYPE: &'static #core::primitive::str = #name;
                const VERSION: #core::primitive::u32 = 1;
            }
        };
    }
}
