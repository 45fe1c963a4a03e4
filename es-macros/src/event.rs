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

/// Unions and generics are rejected whatever the attributes say.
fn check_shape(cx: &mut Ctxt, input: &syn::DeriveInput) {
    if let syn::Data::Union(data) = &input.data {
        cx.error_spanned_by(
            data.union_token,
            "`#[derive(Event)]` does not support unions: an event must be a struct or an enum that serde can encode",
        );
    }
    attr::reject_generics(
        cx,
        &input.generics,
        "events",
        "an event",
        attr::GENERIC_EVENT_FIX,
    );
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

/// Cross-attribute checks: the chain covers every version below the current one exactly
/// once, and aliases do not repeat the name.
fn validate(cx: &mut Ctxt, attrs: &EventAttrs, ident: &syn::Ident) {
    if attrs.name.is_none() {
        attr::check_default_name(cx, ident, "an event name", EVENT);
    }
    if attrs.chain_known {
        validate_chain(cx, attrs, ident);
    }
    let mut names = vec![
        attrs
            .name
            .as_ref()
            .map_or_else(|| attr::default_stored_name(ident), syn::LitStr::value),
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
    // `seen` holds only steps below the version, so this count cannot underflow. List the
    // first few gaps only: a typo such as `version = 3000000000` must stay a quick error.
    let missing_count = u64::from(attrs.version) - 1 - seen.len() as u64;
    if missing_count > 0 {
        const LISTED: usize = 5;
        let mut missing: Vec<String> = (1..attrs.version)
            .filter(|v| !seen.contains_key(v))
            .take(LISTED)
            .map(|v| format!("{v} -> {}", v + 1))
            .collect();
        if missing_count > LISTED as u64 {
            missing.push(format!("and {} more", missing_count - LISTED as u64));
        }
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
    let core = quote!(#private::core);
    let name = attrs
        .name
        .as_ref()
        .map_or_else(|| attr::default_stored_name(ident), syn::LitStr::value);
    let version = attrs.version;
    let aliases = &attrs.aliases;
    let aliases_const = if aliases.is_empty() {
        TokenStream::new()
    } else {
        quote!(const ALIASES: &'static [&'static #core::primitive::str] = &[#(#aliases),*];)
    };

    let upcast_fn = if attrs.steps.is_empty() {
        TokenStream::new()
    } else {
        // The type a `via` step converts into: the next step's `via` type, or the event.
        // The type a `via` step converts into: the next step's `via` type, or the event.
        let via_target = |from: u32| -> Option<&syn::Type> {
            match attrs
                .steps
                .iter()
                .find(|s| s.from == from + 1)
                .map(|s| &s.kind)
            {
                Some(StepKind::Via(ty)) if from + 1 < attrs.version => Some(ty),
                // Otherwise the event: validate_chain rejected a `with` step after a `via` step.
                _ => None,
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
                    // The decode and `From` checks are reported on this step's `via` type.
                    let decode =
                        attr::respan(quote!(<#ty as #private::ViaSource>::decode_via), ty.span());
                    let (target, encode) = match via_target(from) {
                        // A middle type is encoded again: reported on that type.
                        Some(next) => (
                            quote!(#next),
                            attr::respan(
                                quote!(<#next as #private::ViaEncode>::encode_via),
                                next.span(),
                            ),
                        ),
                        // The event is `Serialize` (the `Event` impl checks that).
                        None => (quote!(#ident), quote!(#private::encode_event)),
                    };
                    let convert = attr::respan(
                        quote!(<#target as #private::UpcastFrom<#ty>>::upcast_from),
                        ty.span(),
                    );
                    quote! {
                        #from => {
                            let __es_old = #decode(__es_payload)?;
                            #encode(&#convert(__es_old))
                        }
                    }
                }
            }
        });
        quote! {
            fn upcast_step(
                __es_from: #core::primitive::u32,
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
                const EVENT_TYPE: &'static #core::primitive::str = #name;
                const VERSION: #core::primitive::u32 = #version;
                #aliases_const
                #upcast_fn
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::{expand, fallback};
    use crate::test_helpers::{assert_errors, compact, errors, output};

    fn run(input: proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream> {
        expand(&syn::parse2(input).expect("test input is a type definition"))
    }

    #[test]
    fn defaults_name_version_and_runtime_path() {
        let out = output(run(quote! { struct Deposited { amount: u64 } }));
        assert!(out.contains("impl::es_core::EventforDeposited"), "{out}");
        assert!(
            out.contains(
                "constEVENT_TYPE:&'static::es_core::__private::core::primitive::str=\"Deposited\";"
            ),
            "{out}"
        );
        assert!(
            out.contains("constVERSION:::es_core::__private::core::primitive::u32=1u32;"),
            "{out}"
        );
        // No aliases and no steps: the trait's defaults are used.
        assert!(!out.contains("ALIASES"), "{out}");
        assert!(!out.contains("upcast_step"), "{out}");
        assert!(out.contains("#[automatically_derived]"), "{out}");
    }

    #[test]
    fn unit_tuple_and_enum_events_expand() {
        for input in [
            quote! { struct Closed; },
            quote! { struct Moved(u32, u32); },
            quote! { enum Changed { A, B { x: u8 } } },
            quote! { pub(crate) struct Empty {} },
        ] {
            let out = output(run(input));
            assert!(out.contains("impl::es_core::Eventfor"), "{out}");
        }
    }

    #[test]
    fn attributes_are_applied() {
        let out = output(run(quote! {
            #[event(name = "MoneyDeposited", version = 3, aliases("FundsAdded", "Deposit"))]
            #[event(upcast(from = 1, with = up::one), upcast(from = 2, with = two))]
            struct Deposited { cents: u64 }
        }));
        assert!(out.contains("=\"MoneyDeposited\";"), "{out}");
        assert!(
            out.contains("constVERSION:::es_core::__private::core::primitive::u32=3u32;"),
            "{out}"
        );
        assert!(out.contains("&[\"FundsAdded\",\"Deposit\"]"), "{out}");
        assert!(
            out.contains("1u32=>{let__es_step:::es_core::__private::UpcastFn=up::one;"),
            "{out}"
        );
        assert!(
            out.contains("2u32=>{let__es_step:::es_core::__private::UpcastFn=two;"),
            "{out}"
        );
    }

    #[test]
    fn via_steps_convert_into_the_next_via_type_then_the_event() {
        let out = output(run(quote! {
            #[event(version = 3, upcast(from = 1, via = V1), upcast(from = 2, via = V2))]
            struct Opened { owner: String }
        }));
        assert!(
            out.contains("<V1as::es_core::__private::ViaSource>::decode_via"),
            "{out}"
        );
        assert!(
            out.contains("<V2as::es_core::__private::UpcastFrom<V1>>::upcast_from"),
            "{out}"
        );
        assert!(
            out.contains("<Openedas::es_core::__private::UpcastFrom<V2>>::upcast_from"),
            "{out}"
        );
    }

    #[test]
    fn crate_path_replaces_es_core_everywhere() {
        let out = output(run(quote! {
            #[event(crate = "crate::rt", version = 2, upcast(from = 1, via = V1))]
            struct Opened { owner: String }
        }));
        assert!(!out.contains("es_core"), "{out}");
        assert!(out.contains("implcrate::rt::EventforOpened"), "{out}");
        assert!(
            out.contains("crate::rt::__private::UpcastFrom<V1>"),
            "{out}"
        );
    }

    #[test]
    fn every_bad_attribute_is_reported_in_one_call() {
        let errors = errors(run(quote! {
            #[event(name = "Money Deposited", version = 0, colour = "red")]
            #[event(aliases("ok", "not ok"), crate = "1 + 1", name = "Again")]
            struct Deposited { amount: u64 }
        }));
        assert_errors(
            &errors,
            &[
                "an event name `Money Deposited` is not a valid stored name",
                "schema versions start at 1",
                "unknown attribute `colour` in `#[event(...)]`",
                "an alias `not ok` is not a valid stored name",
                "`1 + 1` is not a path",
            ],
        );
    }

    #[test]
    fn duplicates_are_reported_once_each() {
        let errors = errors(run(quote! {
            #[event(name = "A", name = "B", version = 2, aliases("X"), aliases("Y"))]
            #[event(version = 3, upcast(from = 1, with = f), upcast(from = 2, with = g))]
            struct Deposited { amount: u64 }
        }));
        assert_errors(
            &errors,
            &[
                "duplicate attribute `name`",
                "duplicate attribute `aliases`",
                "duplicate attribute `version`",
            ],
        );
    }

    #[test]
    fn union_and_generics_are_both_reported() {
        let both = errors(run(quote! {
            union Deposited<T: Copy> { a: T, b: u8 }
        }));
        assert_errors(
            &both,
            &[
                "does not support unions",
                "generic events are not supported",
            ],
        );
        let where_only = errors(run(quote! { struct Deposited where u8: Copy { a: u8 } }));
        assert_errors(&where_only, &["generic events are not supported"]);
    }

    #[test]
    fn chain_gaps_duplicates_and_late_steps() {
        let errors = errors(run(quote! {
            #[event(version = 5,
                upcast(from = 1, with = f),
                upcast(from = 1, with = g),
                upcast(from = 3, with = f),
                upcast(from = 7, with = f))]
            struct Deposited { amount: u64 }
        }));
        assert_errors(
            &errors,
            &[
                "two upcast steps from version 1",
                "upcast step from version 7 is not below the current version 5",
                "no step for 2 -> 3, 4 -> 5",
            ],
        );
    }

    #[test]
    fn a_step_that_cannot_be_read_does_not_also_report_a_gap() {
        for step in [
            quote!(upcast(from = 1)),
            quote!(upcast(with = f)),
            quote!(upcast(from = 1, with = f, via = V1)),
            quote!(upcast(from = 1, using = f)),
            quote!(upcast(from = 0, with = f)),
            quote!(upcast(from = "1", with = f)),
            quote!(upcast(from = 1, with = "f")),
            quote!(upcast(from = 1, with = f g)),
            quote!(upcast = 1),
            quote!(upcast),
        ] {
            let input = quote! {
                #[event(version = 2, #step)]
                struct Deposited { amount: u64 }
            };
            let errors = errors(run(input));
            assert_eq!(errors.len(), 1, "{step}: {errors:#?}");
            assert!(!errors[0].contains("gap"), "{step}: {errors:#?}");
        }
    }

    #[test]
    fn a_via_step_before_a_with_step_is_rejected() {
        let errors = errors(run(quote! {
            #[event(version = 3, upcast(from = 1, via = V1), upcast(from = 2, with = f))]
            struct Deposited { amount: u64 }
        }));
        assert_errors(
            &errors,
            &["a `via` step from version 1 converts into the type of version 2"],
        );
    }

    #[test]
    fn aliases_must_differ_from_the_name_and_each_other() {
        let errors = errors(run(quote! {
            #[event(aliases("Deposited", "Old", "Old"))]
            struct Deposited { amount: u64 }
        }));
        assert_errors(
            &errors,
            &[
                "alias `Deposited` repeats the event's name",
                "alias `Old` repeats another alias",
            ],
        );
    }

    #[test]
    fn odd_attribute_shapes_are_errors_not_panics() {
        for attribute in [
            quote!(#[event]),
            quote!(#[event = "x"]),
            quote!(#[event()]),
            quote!(#[event(name)]),
            quote!(#[event(name = 1)]),
            quote!(#[event(version = 99999999999)]),
            quote!(#[event(version = -1)]),
            quote!(#[event(version = 1.5)]),
            quote!(#[event(aliases = "x")]),
            quote!(#[event(aliases(x))]),
            quote!(#[event(crate)]),
            quote!(#[event(a::b = 1)]),
            quote!(#[event(name = "x",,)]),
        ] {
            let input = quote! {
                #attribute
                struct Deposited { amount: u64 }
            };
            let result = run(input);
            if attribute.to_string() == quote!(#[event()]).to_string() {
                assert!(result.is_ok());
            } else {
                assert!(result.is_err(), "{attribute} was accepted");
            }
        }
    }

    #[test]
    fn event_attributes_on_variants_and_fields_are_rejected() {
        let found = errors(run(quote! {
            enum Changed {
                #[event(name = "A")]
                A { #[event(version = 2)] x: u8 },
                B(#[serde(default)] u8),
            }
        }));
        assert_errors(
            &found,
            &[
                "`#[event(...)]` goes on the event type itself, not on an enum variant",
                "`#[event(...)]` goes on the event type itself, not on a field",
            ],
        );
        let tuple = errors(run(quote! { struct Moved(#[event(name = "x")] u32); }));
        assert_errors(&tuple, &["not on a field"]);
    }

    #[test]
    fn an_enum_without_variants_is_rejected() {
        let found = errors(run(quote! { enum Never {} }));
        assert_errors(
            &found,
            &["an event enum needs at least one variant: `Never` has none"],
        );
    }

    #[test]
    fn aliases_with_equals_shows_the_list_form() {
        let found = errors(run(quote! {
            #[event(aliases = "Old", version = 0)]
            struct Deposited { amount: u64 }
        }));
        assert_errors(
            &found,
            &["write `aliases(\"Old\")`", "schema versions start at 1"],
        );
        let list = errors(run(quote! {
            #[event(aliases = ["A", "B"])]
            struct Deposited { amount: u64 }
        }));
        assert_errors(&list, &["write `aliases(\"OldName\", ...)`"]);
    }

    #[test]
    fn unknown_keys_suggest_the_nearest_key() {
        let errors = errors(run(quote! {
            #[event(nmae = "A", Version = 2, alias("B"), colour = "red", upcast(form = 1, with = f))]
            struct Deposited { amount: u64 }
        }));
        assert_errors(
            &errors,
            &[
                "unknown attribute `nmae` in `#[event(...)]`; did you mean `name`? expected one of:",
                "unknown attribute `Version` in `#[event(...)]`; did you mean `version`?",
                "unknown attribute `alias` in `#[event(...)]`; did you mean `aliases`?",
                "unknown attribute `colour` in `#[event(...)]`; expected one of:",
                "unknown attribute `form` in `upcast(...)`; did you mean `from`?",
            ],
        );
    }

    #[test]
    fn other_attributes_are_ignored() {
        output(run(quote! {
            #[serde(rename_all = "camelCase")]
            #[doc = "An event."]
            #[events(whatever)]
            struct Deposited { amount: u64 }
        }));
    }

    #[test]
    fn fallback_is_a_stub_impl_unless_the_shape_is_unsupported() {
        let input: syn::DeriveInput = syn::parse_quote! {
            #[event(name = "bad name", crate = "rt", version = 0)]
            struct Deposited { amount: u64 }
        };
        let stub = compact(&fallback(&input));
        assert!(stub.contains("implrt::EventforDeposited"), "{stub}");
        assert!(
            stub.contains("=\"Deposited\";constVERSION:rt::__private::core::primitive::u32=1;"),
            "{stub}"
        );
        for input in [
            syn::parse_quote! { union Deposited { a: u8 } },
            syn::parse_quote! { struct Deposited<T> { a: T } },
        ] {
            assert!(fallback(&input).is_empty());
        }
    }
}
