//! Expansion tests of `#[read_model]`: what it accepts and the errors it reports.

use quote::quote;

use crate::test_helpers::compact;

fn expand(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
    compact(&super::expand(args, item))
}

#[test]
fn a_handler_per_event_with_and_without_the_envelope() {
    let out = expand(
        quote!(),
        quote! {
            impl Totals {
                #[from(Inventory)]
                fn added(&mut self, e: &ItemsAdded) { self.n += e.count; }
                #[from(Warehouse)]
                fn opened(&mut self, e: &Created, record: &es_core::EventRecord<'_>) -> Result<(), Oops> { Ok(()) }
            }
        },
    );
    assert!(!out.contains("compile_error"), "{out}");
    assert!(
        !out.contains("#[from"),
        "the `from` attributes are stripped: {out}"
    );
    assert!(
        out.contains("constNAME:&'static::es_core::__private::core::primitive::str=\"Totals\""),
        "{out}"
    );
    assert!(out.contains("decode_event::<ItemsAdded>"), "{out}");
    assert!(
        out.contains("self.opened(&__es_event,__es_record)"),
        "{out}"
    );
    assert!(out.contains("check_event_of"), "{out}");
}

#[test]
fn every_error_is_reported_at_once() {
    let out = expand(
        quote!(nmae = "x", name = "bad name"),
        quote! {
            impl Totals {
                fn added(&mut self, e: &ItemsAdded) {}
                #[from(Inventory)]
                fn removed(&self, e: ItemsRemoved) {}
                #[from(Inventory, Warehouse)]
                fn both(&mut self, e: &Moved) {}
            }
        },
    );
    for expected in [
        "unknown attribute `nmae`",
        "is not a valid stored name",
        "handler `added` does not say which aggregate",
        "takes `&mut self`",
        "take the event by shared reference",
        "one handler per aggregate",
    ] {
        let expected = expected.replace(' ', "");
        assert!(out.contains(&expected), "missing {expected:?} in {out}");
    }
    // The block and a stub impl are still emitted.
    assert!(out.contains("implTotals{fnadded"), "{out}");
    assert!(
        out.contains("constHANDLES:&'static[::es_core::__private::Handled]=&[];"),
        "{out}"
    );
}

#[test]
fn not_an_impl_block() {
    let out = expand(
        quote!(),
        quote!(
            struct Totals;
        ),
    );
    assert!(
        out.contains("goesonthereadmodel'sinherentimplblock"),
        "{out}"
    );
    assert!(out.contains("structTotals;"), "{out}");
}
