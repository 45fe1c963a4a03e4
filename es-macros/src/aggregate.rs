//! `#[derive(Aggregate)]`: the stored aggregate type and the link to its `#[applies]` block.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;

use crate::attr::{self, Once, WithSpan};
use crate::ctxt::Ctxt;
use crate::symbol::*;

/// The parsed `#[aggregate(...)]` attributes.
struct AggregateAttrs {
    name: Option<syn::LitStr>,
    /// `snapshot_every = N` with the span of its key, and `snapshot_version = V`.
    snapshots: Option<(WithSpan<u64>, u32)>,
    krate: syn::Path,
}

pub fn expand(input: &syn::DeriveInput) -> syn::Result<TokenStream> {
    let mut cx = Ctxt::new();
    check_shape(&mut cx, input);
    let attrs = parse_attrs(&mut cx, input);
    attr::reject_misplaced(&mut cx, &input.data, AGGREGATE, "aggregate");
    if attrs.name.is_none() {
        attr::check_default_name(&mut cx, &input.ident, "an aggregate name", AGGREGATE);
    }
    cx.check()?;
    Ok(generate(input, &attrs))
}

/// What to emit next to the errors when [`expand`] fails: the `Aggregate` impl under the
/// default name, so code using the aggregate does not add "`X` is not an aggregate" to the
/// real error.
pub fn fallback(input: &syn::DeriveInput) -> TokenStream {
    let mut cx = Ctxt::new();
    check_shape(&mut cx, input);
    if cx.has_errors() {
        return TokenStream::new();
    }
    let mut attrs = parse_attrs(&mut cx, input);
    attrs.name = None;
    generate(input, &attrs)
}

fn check_shape(cx: &mut Ctxt, input: &syn::DeriveInput) {
    if let syn::Data::Union(data) = &input.data {
        cx.error_spanned_by(
            data.union_token,
            "`#[derive(Aggregate)]` does not support unions: use a struct (or an enum for a state machine)",
        );
    }
    attr::reject_generics(
        cx,
        &input.generics,
        "aggregates",
        "an aggregate",
        attr::GENERIC_AGGREGATE_FIX,
    );
}

fn parse_attrs(cx: &mut Ctxt, input: &syn::DeriveInput) -> AggregateAttrs {
    let mut name = Once::new(NAME);
    let mut krate = Once::new(CRATE);
    let mut every = Once::new(SNAPSHOT_EVERY);
    let mut snapshot_version = Once::new(SNAPSHOT_VERSION);
    for attribute in input.attrs.iter().filter(|a| a.path().is_ident(AGGREGATE)) {
        let result = attribute.parse_nested_meta(|meta| {
            let span = meta.path.span();
            if meta.path.is_ident(NAME) {
                if let Some(lit) = attr::parse_stored_name(cx, &meta, "an aggregate name")? {
                    name.set(cx, span, lit);
                }
            } else if meta.path.is_ident(CRATE) {
                if let Some(path) = attr::parse_crate_path(cx, &meta)? {
                    krate.set(cx, span, path);
                }
            } else if meta.path.is_ident(SNAPSHOT_EVERY) {
                if let Some(n) = parse_snapshot_every(cx, &meta)? {
                    every.set(cx, span, n);
                }
            } else if meta.path.is_ident(SNAPSHOT_VERSION) {
                if let Some(v) = attr::parse_version(cx, &meta, SNAPSHOT_VERSION)? {
                    snapshot_version.set(cx, span, v.value);
                }
            } else {
                attr::unknown_key(cx, &meta, "#[aggregate(...)]", AGGREGATE_KEYS)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
    let snapshot_version = snapshot_version.get();
    let snapshots = match (every.get(), snapshot_version) {
        (Some(every), version) => Some((
            WithSpan {
                value: every.value,
                span: every.span,
            },
            version.map_or(1, |v| v.value),
        )),
        (None, Some(version)) => {
            cx.error_spanned_by(
                quote::quote_spanned!(version.span=> snapshot_version),
                "`snapshot_version` needs `snapshot_every = N`, which turns snapshots on",
            );
            None
        }
        (None, None) => None,
    };
    AggregateAttrs {
        name: name.get().map(|s| s.value),
        snapshots,
        krate: krate
            .get()
            .map_or_else(attr::default_crate_path, |s| s.value),
    }
}

/// Parses `= N` for `snapshot_every`: an integer of at least 1.
fn parse_snapshot_every(
    cx: &mut Ctxt,
    meta: &syn::meta::ParseNestedMeta<'_>,
) -> syn::Result<Option<u64>> {
    let lit: syn::Lit = meta.value()?.parse()?;
    let parsed = match &lit {
        syn::Lit::Int(int) => int.base10_parse::<u64>().ok().filter(|&n| n > 0),
        _ => None,
    };
    if parsed.is_none() {
        cx.error_spanned_by(
            &lit,
            "expected a number of events of at least 1, such as `snapshot_every = 100`",
        );
    }
    Ok(parsed)
}

/// The snapshot items of the `Aggregate` impl, spanned on `snapshot_every` so that a state
/// without serde is reported there.
fn snapshot_items(attrs: &AggregateAttrs) -> TokenStream {
    let Some((every, version)) = &attrs.snapshots else {
        return TokenStream::new();
    };
    let krate = &attrs.krate;
    let n = every.value;
    let private = quote!(#krate::__private);
    let items = quote! {
        const SNAPSHOT: #private::core::option::Option<#krate::SnapshotPolicy> =
            #private::core::option::Option::Some(#krate::SnapshotPolicy { every: #n, version: #version });
        fn to_snapshot(&self) -> #private::core::option::Option<#private::SnapshotJson> {
            #private::core::option::Option::Some(<Self as #private::SnapshotState>::to_snapshot_json(self))
        }
        fn from_snapshot(__es_state: &#private::core::primitive::str) -> #private::core::option::Option<#private::SnapshotRestore<Self>> {
            #private::core::option::Option::Some(<Self as #private::SnapshotState>::from_snapshot_json(__es_state))
        }
    };
    attr::respan(items, every.span)
}

fn generate(input: &syn::DeriveInput, attrs: &AggregateAttrs) -> TokenStream {
    let ident = &input.ident;
    let krate = &attrs.krate;
    let name = attrs
        .name
        .as_ref()
        .map_or_else(|| attr::default_stored_name(ident), syn::LitStr::value);
    // Tells the repository whether sharing this name with another type can be meant.
    let explicit = if attrs.name.is_some() {
        quote!(const AGGREGATE_TYPE_IS_EXPLICIT: #krate::__private::core::primitive::bool = true;)
    } else {
        TokenStream::new()
    };
    let snapshots = snapshot_items(attrs);
    // The impl is spanned on the struct's name: a missing `#[applies]` block or `Default`
    // is reported there, once, instead of on the derive and again on the name.
    let handlers = quote!(<#ident as #krate::EventHandlers>);
    let aggregate_impl = attr::respan(
        quote! {
            impl #krate::Aggregate for #ident {
                const AGGREGATE_TYPE: &'static #krate::__private::core::primitive::str = #name;
                #explicit
                #snapshots
                type Event = #handlers::Event;
                #[inline]
                fn apply(&mut self, __es_event: &Self::Event) {
                    #handlers::apply_event(self, __es_event);
                }
            }
        },
        ident.span(),
    );
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            #aggregate_impl
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
    fn links_the_struct_to_its_handlers() {
        let out = output(run(quote! {
            #[derive(Default)]
            struct Account { balance: u64 }
        }));
        assert!(out.contains("impl::es_core::AggregateforAccount"), "{out}");
        assert!(
            out.contains("constAGGREGATE_TYPE:&'static::es_core::__private::core::primitive::str=\"Account\";"),
            "{out}"
        );
        assert!(
            out.contains("typeEvent=<Accountas::es_core::EventHandlers>::Event;"),
            "{out}"
        );
        assert!(
            out.contains("<Accountas::es_core::EventHandlers>::apply_event(self,__es_event)"),
            "{out}"
        );
    }

    #[test]
    fn unit_tuple_and_enum_aggregates_expand() {
        for input in [
            quote! { struct Counter; },
            quote! { struct Counter(u64); },
            quote! { enum Door { #[default] Open, Closed } },
        ] {
            output(run(input));
        }
    }

    #[test]
    fn name_and_crate() {
        let out = output(run(quote! {
            #[aggregate(name = "bank:Account", crate = "rt")]
            struct Account { balance: u64 }
        }));
        assert!(out.contains("=\"bank:Account\";"), "{out}");
        assert!(!out.contains("es_core"), "{out}");
    }

    #[test]
    fn every_bad_attribute_is_reported_in_one_call() {
        let errors = errors(run(quote! {
            #[aggregate(name = "", table = "accounts")]
            #[aggregate(crate = "not a path", name = "A", name = "B")]
            struct Account<T> { balance: T }
        }));
        assert_errors(
            &errors,
            &[
                "generic aggregates are not supported",
                "an aggregate name must not be empty",
                "unknown attribute `table` in `#[aggregate(...)]`",
                "`not a path` is not a path",
                "duplicate attribute `name`",
            ],
        );
    }

    #[test]
    fn aggregate_attributes_on_variants_and_fields_are_rejected() {
        let field = errors(run(quote! {
            struct Account { #[aggregate(name = "A")] balance: u64 }
        }));
        assert_errors(
            &field,
            &["`#[aggregate(...)]` goes on the aggregate type itself, not on a field"],
        );
        let variant = errors(run(quote! {
            #[aggregate(nmae = "Door")]
            enum Door { #[default] #[aggregate(name = "Open")] Open, Closed }
        }));
        assert_errors(
            &variant,
            &[
                "unknown attribute `nmae` in `#[aggregate(...)]`; did you mean `name`?",
                "`#[aggregate(...)]` goes on the aggregate type itself, not on an enum variant",
            ],
        );
    }

    #[test]
    fn odd_attribute_shapes_are_errors_not_panics() {
        for attribute in [
            quote!(#[aggregate]),
            quote!(#[aggregate = "x"]),
            quote!(#[aggregate(name)]),
            quote!(#[aggregate(name("x"))]),
            quote!(#[aggregate(crate = 1)]),
        ] {
            let input = quote! {
                #attribute
                struct Account { balance: u64 }
            };
            assert!(run(input).is_err(), "{attribute} was accepted");
        }
        assert!(run(quote! { union Account { a: u8 } }).is_err());
    }

    #[test]
    fn fallback_uses_the_default_name() {
        let input: syn::DeriveInput = syn::parse_quote! {
            #[aggregate(name = "bad name", colour = "red")]
            struct Account { balance: u64 }
        };
        let stub = compact(&fallback(&input));
        assert!(
            stub.contains("impl::es_core::AggregateforAccount"),
            "{stub}"
        );
        assert!(stub.contains("=\"Account\";"), "{stub}");
        let generic: syn::DeriveInput = syn::parse_quote! { struct Account<T>(T); };
        assert!(fallback(&generic).is_empty());
    }
}
