//! Expansion tests for `#[derive(Event)]`.

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
