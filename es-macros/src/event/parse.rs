//! Parsing `#[event(...)]`: the name, version, aliases, crate path and every
//! `upcast(...)` step. Errors are collected in the [`Ctxt`], each spanned on the user's tokens.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;

use super::{EventAttrs, Step, StepKind};
use crate::attr::{self, Once, WithSpan};
use crate::ctxt::Ctxt;
use crate::symbol::*;

pub(super) fn parse_attrs(cx: &mut Ctxt, input: &syn::DeriveInput) -> EventAttrs {
    let mut name = Once::new(NAME);
    let mut version = Once::new(VERSION);
    let mut aliases = Once::new(ALIASES);
    let mut krate = Once::new(CRATE);
    let mut steps = Vec::new();
    let mut chain_known = true;

    for attribute in input.attrs.iter().filter(|a| a.path().is_ident(EVENT)) {
        let result = attribute.parse_nested_meta(|meta| {
            let span = meta.path.span();
            if meta.path.is_ident(NAME) {
                if let Some(lit) = attr::parse_stored_name(cx, &meta, "an event name")? {
                    name.set(cx, span, lit);
                }
            } else if meta.path.is_ident(VERSION) {
                match attr::parse_version(cx, &meta, VERSION)? {
                    Some(v) => chain_known &= version.set(cx, v.span, v.value),
                    None => chain_known = false,
                }
            } else if meta.path.is_ident(ALIASES) && meta.input.peek(syn::Token![=]) {
                misused_aliases(cx, &meta)?;
            } else if meta.path.is_ident(ALIASES) {
                let content;
                syn::parenthesized!(content in meta.input);
                let list = content.parse_terminated(
                    |input: syn::parse::ParseStream<'_>| input.parse::<syn::LitStr>(),
                    syn::Token![,],
                )?;
                for alias in &list {
                    if let Err(message) = attr::validate_stored_name(&alias.value(), "an alias") {
                        cx.error_spanned_by(alias, message);
                    }
                }
                aliases.set(cx, span, list.into_iter().collect::<Vec<_>>());
            } else if meta.path.is_ident(UPCAST) {
                match parse_step(cx, &meta) {
                    Ok(Some(step)) => steps.push(step),
                    Ok(None) => chain_known = false,
                    Err(error) => {
                        chain_known = false;
                        return Err(error);
                    }
                }
            } else if meta.path.is_ident(CRATE) {
                if let Some(path) = attr::parse_crate_path(cx, &meta)? {
                    krate.set(cx, span, path);
                }
            } else {
                attr::unknown_key(cx, &meta, "#[event(...)]", EVENT_KEYS)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            // A syntax error: the rest of this attribute (maybe a version or a step) was
            // not read.
            chain_known = false;
            cx.syn_error(error);
        }
    }

    let version = version.get();
    EventAttrs {
        name: name.get().map(|s| s.value),
        version: version.as_ref().map_or(1, |v| v.value),
        version_span: version.map(|v| v.span),
        steps,
        aliases: aliases.get().map(|s| s.value).unwrap_or_default(),
        krate: krate
            .get()
            .map_or_else(attr::default_crate_path, |s| s.value),
        chain_known,
    }
}

/// Records an error for `aliases = ...`, showing the list form with the names written.
fn misused_aliases(cx: &mut Ctxt, meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    let value = meta.value()?;
    let mut tokens = TokenStream::new();
    while !value.is_empty() && !value.peek(syn::Token![,]) {
        tokens.extend([value.parse::<proc_macro2::TokenTree>()?]);
    }
    let names = match syn::parse2::<syn::LitStr>(tokens.clone()) {
        Ok(lit) => format!("{:?}", lit.value()),
        Err(_) => "\"OldName\", ...".to_owned(),
    };
    let path = &meta.path;
    cx.error_spanned_by(
        quote!(#path #tokens),
        format!("`aliases` takes a list of older names: write `aliases({names})`"),
    );
    Ok(())
}

/// Parses `upcast(from = N, with = path)` or `upcast(from = N, via = Type)`; `None` after
/// recording an error if the step is incomplete.
fn parse_step(cx: &mut Ctxt, meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Option<Step>> {
    let mut from = Once::new(FROM);
    let mut with = Once::new(WITH);
    let mut via = Once::new(VIA);
    let mut complete = true;
    meta.parse_nested_meta(|inner| {
        let span = inner.path.span();
        if inner.path.is_ident(FROM) {
            match attr::parse_version(cx, &inner, FROM)? {
                Some(v) => {
                    from.set(cx, v.span, v.value);
                }
                None => complete = false,
            }
        } else if inner.path.is_ident(WITH) {
            let value = inner.value()?;
            if value.peek(syn::LitStr) {
                let lit: syn::LitStr = value.parse()?;
                cx.error_spanned_by(
                    &lit,
                    format!(
                        "`with` takes a function path, not a string: write `with = {}`",
                        lit.value()
                    ),
                );
                complete = false;
            } else {
                with.set(cx, span, value.parse::<syn::Path>()?);
            }
        } else if inner.path.is_ident(VIA) {
            via.set(cx, span, inner.value()?.parse::<syn::Type>()?);
        } else {
            attr::unknown_key(cx, &inner, "upcast(...)", UPCAST_KEYS)?;
            complete = false;
        }
        Ok(())
    })?;
    let from = from.get();
    if from.is_none() && complete {
        cx.syn_error(
            meta.error(
                "`upcast(...)` needs `from = N`: the stored version this step migrates from",
            ),
        );
    }
    let kind = match (with.get(), via.get()) {
        (Some(with), None) => Some(StepKind::With(with.value, with.span)),
        (None, Some(via)) => Some(StepKind::Via(via.value)),
        (Some(_), Some(via)) => {
            cx.syn_error(syn::Error::new(
                via.span,
                "`upcast(...)` takes either `with = function` or `via = OldType`, not both",
            ));
            None
        }
        (None, None) => {
            if complete {
                cx.syn_error(meta.error(
                    "`upcast(...)` needs `with = function` (a `fn(Value) -> Result<Value, UpcastError>`) or `via = OldType` (a type with `From<OldType>` for the next version)",
                ));
            }
            None
        }
    };
    Ok(match (from, kind) {
        (Some(WithSpan { value, span }), Some(kind)) if complete => Some(Step {
            from: value,
            from_span: span,
            kind,
        }),
        _ => None,
    })
}
