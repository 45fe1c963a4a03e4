//! `#[derive(Event)]`: stored name, schema version, aliases and the upcaster chain.

use std::collections::BTreeMap;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::attr::{self, Once};
use crate::ctxt::Ctxt;
use crate::symbol::*;

/// One `upcast(from = N, with = f | via = T)` step.
struct Step {
    from: u32,
    from_span: Span,
    kind: StepKind,
}

enum StepKind {
    /// A JSON function `fn(Value) -> Result<Value, UpcastError>`.
    With(syn::Path),
    /// An older struct, converted with `From` into the next version's type.
    Via(syn::Type),
}

/// The parsed `#[event(...)]` attributes.
struct EventAttrs {
    name: Option<syn::LitStr>,
    version: u32,
    version_span: Option<Span>,
    steps: Vec<Step>,
    aliases: Vec<syn::LitStr>,
    krate: syn::Path,
}

pub fn expand(input: &syn::DeriveInput) -> syn::Result<TokenStream> {
    let mut cx = Ctxt::new();
    if let syn::Data::Union(data) = &input.data {
        cx.error_spanned_by(
            &data.union_token,
            "`#[derive(Event)]` does not support unions: an event must be a struct or an enum that serde can encode",
        );
    }
    attr::reject_generics(&mut cx, &input.generics, "event");
    let attrs = parse_attrs(&mut cx, input);
    validate_chain(&mut cx, &attrs, &input.ident);
    cx.check()?;
    Ok(generate(input, &attrs))
}

fn parse_attrs(cx: &mut Ctxt, input: &syn::DeriveInput) -> EventAttrs {
    let mut name = Once::new(NAME);
    let mut version = Once::new(VERSION);
    let mut aliases = Once::new(ALIASES);
    let mut krate = Once::new(CRATE);
    let mut steps = Vec::new();

    for attribute in input.attrs.iter().filter(|a| a.path().is_ident(EVENT)) {
        let result = attribute.parse_nested_meta(|meta| {
            let span = meta.path.span();
            if meta.path.is_ident(NAME) {
                let lit = attr::parse_stored_name(&meta, "an event name")?;
                name.set(cx, span, lit);
            } else if meta.path.is_ident(VERSION) {
                let lit: syn::LitInt = meta.value()?.parse()?;
                let value: u32 = lit.base10_parse()?;
                if value == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "event versions start at 1",
                    ));
                }
                version.set(cx, lit.span(), value);
            } else if meta.path.is_ident(ALIASES) {
                let content;
                syn::parenthesized!(content in meta.input);
                let list = content.parse_terminated(|input: syn::parse::ParseStream<'_>| input.parse::<syn::LitStr>(), syn::Token![,])?;
                for alias in &list {
                    if let Err(message) = attr::validate_stored_name(&alias.value(), "an alias") {
                        cx.error_spanned_by(alias, message);
                    }
                }
                let list: Vec<syn::LitStr> = list.into_iter().collect();
                aliases.set(cx, span, list);
            } else if meta.path.is_ident(UPCAST) {
                if let Some(step) = parse_step(cx, &meta)? {
                    steps.push(step);
                }
            } else if meta.path.is_ident(CRATE) {
                krate.set(cx, span, attr::parse_crate_path(&meta)?);
            } else {
                return Err(attr::unknown_key(&meta, EVENT, EVENT_KEYS));
            }
            Ok(())
        });
        if let Err(error) = result {
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
        krate: krate.get().map_or_else(attr::default_crate_path, |s| s.value),
    }
}

/// Parses `upcast(from = N, with = path)` or `upcast(from = N, via = Type)`.
fn parse_step(cx: &mut Ctxt, meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Option<Step>> {
    let mut from = Once::new(FROM);
    let mut with = Once::new(WITH);
    let mut via = Once::new(VIA);
    meta.parse_nested_meta(|inner| {
        let span = inner.path.span();
        if inner.path.is_ident(FROM) {
            let lit: syn::LitInt = inner.value()?.parse()?;
            let value: u32 = lit.base10_parse()?;
            if value == 0 {
                return Err(syn::Error::new(lit.span(), "event versions start at 1"));
            }
            from.set(cx, lit.span(), value);
        } else if inner.path.is_ident(WITH) {
            with.set(cx, span, inner.value()?.parse::<syn::Path>()?);
        } else if inner.path.is_ident(VIA) {
            via.set(cx, span, inner.value()?.parse::<syn::Type>()?);
        } else {
            return Err(attr::unknown_key(&inner, UPCAST, UPCAST_KEYS));
        }
        Ok(())
    })?;
    let Some(from) = from.get() else {
        return Err(meta.error("`upcast(...)` needs `from = N`: the stored version this step migrates from"));
    };
    let kind = match (with.get(), via.get()) {
        (Some(with), None) => StepKind::With(with.value),
        (None, Some(via)) => StepKind::Via(via.value),
        (Some(_), Some(via)) => {
            return Err(syn::Error::new(
                via.span,
                "`upcast(...)` takes either `with = function` or `via = OldType`, not both",
            ));
        }
        (None, None) => {
            return Err(meta.error(
                "`upcast(...)` needs `with = function` (a `fn(Value) -> Result<Value, UpcastError>`) or `via = OldType` (a struct with `From<OldType>` for the next version)",
            ));
        }
    };
    Ok(Some(Step {
        from: from.value,
        from_span: from.span,
        kind,
    }))
}

/// Checks the chain covers every version below the current one exactly once.
fn validate_chain(cx: &mut Ctxt, attrs: &EventAttrs, ident: &syn::Ident) {
    let mut seen: BTreeMap<u32, &Step> = BTreeMap::new();
    for step in &attrs.steps {
        if step.from >= attrs.version {
            cx.syn_error(syn::Error::new(
                step.from_span,
                format!(
                    "upcast step from version {} is not below the current version {}: a step migrates a stored version to the next one; bump `version` or remove this step",
                    step.from, attrs.version
                ),
            ));
        } else if seen.insert(step.from, step).is_some() {
            cx.syn_error(syn::Error::new(
                step.from_span,
                format!("two upcast steps from version {}; keep one", step.from),
            ));
        }
    }
    let missing: Vec<String> = (1..attrs.version)
        .filter(|v| !seen.contains_key(v))
        .map(|v| format!("{v} -> {}", v + 1))
        .collect();
    if !missing.is_empty() {
        let span = attrs.version_span.unwrap_or_else(|| ident.span());
        cx.syn_error(syn::Error::new(
            span,
            format!(
                "the upcaster chain to version {} has a gap: no step for {}; events stored at those versions could not be read. Add `upcast(from = N, with = function)` or `upcast(from = N, via = OldType)` for each",
                attrs.version,
                missing.join(", ")
            ),
        ));
    }
    // A typed step converts into the next version's type, which must be known.
    for step in seen.values() {
        if let StepKind::Via(ty) = &step.kind {
            let next = step.from + 1;
            if next < attrs.version && matches!(seen.get(&next).map(|s| &s.kind), Some(StepKind::With(_))) {
                cx.error_spanned_by(
                    ty,
                    format!(
                        "a `via` step from version {} converts into the type of version {next}, but version {next} is upcast by a JSON function; use `with` for this step too, or `via` for version {next}",
                        step.from
                    ),
                );
            }
        }
    }
    let mut names = vec![attrs.name.as_ref().map_or_else(|| ident.to_string(), syn::LitStr::value)];
    for alias in &attrs.aliases {
        let value = alias.value();
        if names.contains(&value) {
            cx.error_spanned_by(
                alias,
                format!("alias `{value}` repeats the event's name or another alias"),
            );
        } else {
            names.push(value);
        }
    }
}

fn generate(input: &syn::DeriveInput, attrs: &EventAttrs) -> TokenStream {
    let ident = &input.ident;
    let krate = &attrs.krate;
    let name = attrs
        .name
        .as_ref()
        .map_or_else(|| ident.to_string(), syn::LitStr::value);
    let version = attrs.version;
    let aliases = &attrs.aliases;

    let upcast_fn = if attrs.steps.is_empty() {
        TokenStream::new()
    } else {
        let via_target = |from: u32| -> TokenStream {
            let next = from + 1;
            if next == attrs.version {
                return quote!(#ident);
            }
            match attrs.steps.iter().find(|s| s.from == next).map(|s| &s.kind) {
                Some(StepKind::Via(ty)) => quote!(#ty),
                // validate_chain rejected every other case.
                _ => quote!(#ident),
            }
        };
        let arms = attrs.steps.iter().map(|step| {
            let from = step.from;
            match &step.kind {
                StepKind::With(path) => {
                    let step_fn = quote_spanned!(path.span()=>
                        let __es_step: #krate::__private::UpcastFn = #path;
                    );
                    quote!(#from => { #step_fn __es_step(__es_payload) })
                }
                StepKind::Via(ty) => {
                    let target = via_target(from);
                    quote_spanned!(ty.span()=>
                        #from => #krate::__private::upcast_via::<#ty, #target>(__es_payload)
                    )
                }
            }
        });
        quote! {
            fn upcast_step(
                __es_from: u32,
                __es_payload: #krate::__private::Value,
            ) -> #krate::__private::core::result::Result<
                #krate::__private::Value,
                #krate::__private::UpcastError,
            > {
                match __es_from {
                    #(#arms,)*
                    _ => #krate::__private::core::result::Result::Err(
                        #krate::__private::UpcastError::new(
                            "no upcaster is registered from this version",
                        ),
                    ),
                }
            }
        }
    };

    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #krate::Event for #ident {
                const EVENT_TYPE: &'static str = #name;
                const VERSION: u32 = #version;
                const ALIASES: &'static [&'static str] = &[#(#aliases),*];
                #upcast_fn
            }
        };
    }
}
