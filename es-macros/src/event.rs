//! `#[derive(Event)]`: stored name, schema version, aliases and the upcaster chain.

use std::collections::BTreeMap;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::attr::{self, Once, WithSpan};
use crate::ctxt::Ctxt;
use crate::symbol::*;

/// One `upcast(from = N, with = f | via = T)` step.
struct Step {
    from: u32,
    from_span: Span,
    kind: StepKind,
}

enum StepKind {
    /// A JSON function `fn(Value) -> Result<Value, UpcastError>`; the span is the `with` key's.
    With(syn::Path, Span),
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
    /// False when a `version` or `upcast(...)` could not be read: the chain checks would
    /// then report follow-on errors about steps the user did write.
    chain_known: bool,
}

pub fn expand(input: &syn::DeriveInput) -> syn::Result<TokenStream> {
    let mut cx = Ctxt::new();
    check_shape(&mut cx, input);
    let attrs = parse_attrs(&mut cx, input);
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
    let name = ident.to_string();
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #krate::Event for #ident {
                const EVENT_TYPE: &'static str = #name;
                const VERSION: u32 = 1;
            }
        };
    }
}

/// Unions and generics are rejected whatever the attributes say.
fn check_shape(cx: &mut Ctxt, input: &syn::DeriveInput) {
    if let syn::Data::Union(data) = &input.data {
        cx.error_spanned_by(
            data.union_token,
            "`#[derive(Event)]` does not support unions: an event must be a struct or an enum that serde can encode",
        );
    }
    attr::reject_generics(cx, &input.generics, "events", "an event");
}

fn parse_attrs(cx: &mut Ctxt, input: &syn::DeriveInput) -> EventAttrs {
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

/// Cross-attribute checks: the chain covers every version below the current one exactly
/// once, and aliases do not repeat the name.
fn validate(cx: &mut Ctxt, attrs: &EventAttrs, ident: &syn::Ident) {
    if attrs.chain_known {
        validate_chain(cx, attrs, ident);
    }
    let mut names = vec![
        attrs
            .name
            .as_ref()
            .map_or_else(|| ident.to_string(), syn::LitStr::value),
    ];
    for alias in &attrs.aliases {
        let value = alias.value();
        if names.contains(&value) {
            let what = if names[0] == value {
                "the event's name"
            } else {
                "another alias"
            };
            cx.error_spanned_by(alias, format!("alias `{value}` repeats {what}; remove it"));
        } else {
            names.push(value);
        }
    }
}

fn validate_chain(cx: &mut Ctxt, attrs: &EventAttrs, ident: &syn::Ident) {
    let mut seen: BTreeMap<u32, &Step> = BTreeMap::new();
    for step in &attrs.steps {
        if step.from >= attrs.version {
            let advice = if attrs.version_span.is_some() {
                "bump `version` or remove this step"
            } else {
                "add `version = N` (the default is 1) or remove this step"
            };
            cx.syn_error(syn::Error::new(
                step.from_span,
                format!(
                    "upcast step from version {} is not below the current version {}: a step migrates a stored version to the next one; {advice}",
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
            if next < attrs.version
                && matches!(seen.get(&next).map(|s| &s.kind), Some(StepKind::With(..)))
            {
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
}

fn generate(input: &syn::DeriveInput, attrs: &EventAttrs) -> TokenStream {
    let ident = &input.ident;
    let krate = &attrs.krate;
    let private = quote!(#krate::__private);
    let name = attrs
        .name
        .as_ref()
        .map_or_else(|| ident.to_string(), syn::LitStr::value);
    let version = attrs.version;
    let aliases = &attrs.aliases;
    let aliases_const = if aliases.is_empty() {
        TokenStream::new()
    } else {
        quote!(const ALIASES: &'static [&'static str] = &[#(#aliases),*];)
    };

    let upcast_fn = if attrs.steps.is_empty() {
        TokenStream::new()
    } else {
        // The type a `via` step converts into: the next step's `via` type, or the event.
        let via_target = |from: u32| -> TokenStream {
            match attrs
                .steps
                .iter()
                .find(|s| s.from == from + 1)
                .map(|s| &s.kind)
            {
                Some(StepKind::Via(ty)) if from + 1 < attrs.version => quote!(#ty),
                // validate_chain rejected a `with` step after a `via` step.
                _ => quote!(#ident),
            }
        };
        let arms = attrs.steps.iter().map(|step| {
            let from = step.from;
            match &step.kind {
                StepKind::With(path, with_span) => {
                    // A wrong signature is reported on the path, "expected" on `with`.
                    let expected = attr::respan(quote!(#private::UpcastFn), *with_span);
                    let step_fn = quote_spanned!(path.span()=>
                        let __es_step: #expected = #path;
                    );
                    quote!(#from => { #step_fn __es_step(__es_payload) })
                }
                StepKind::Via(ty) => {
                    // Both trait checks are reported on the `via` type.
                    let target = via_target(from);
                    let decode =
                        attr::respan(quote!(<#ty as #private::ViaSource>::decode_via), ty.span());
                    let convert = attr::respan(
                        quote!(<#target as #private::UpcastFrom<#ty>>::upcast_from),
                        ty.span(),
                    );
                    quote! {
                        #from => {
                            let __es_old = #decode(__es_payload)?;
                            let __es_new = #convert(__es_old);
                            #private::core::result::Result::Ok(#private::to_value(&__es_new)?)
                        }
                    }
                }
            }
        });
        quote! {
            fn upcast_step(
                __es_from: u32,
                __es_payload: #private::Value,
            ) -> #private::core::result::Result<#private::Value, #private::UpcastError> {
                match __es_from {
                    #(#arms,)*
                    _ => #private::core::result::Result::Err(
                        #private::UpcastError::new(
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
                #aliases_const
                #upcast_fn
            }
        };
    }
}
