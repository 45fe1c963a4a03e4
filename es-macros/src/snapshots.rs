//! Snapshots of what the three macros generate for a representative domain, pretty-printed,
//! so that any change to generated code shows up in review as a diff of
//! `src/snapshots/*.snap`. Update them with `INSTA_UPDATE=always cargo test -p es-macros`
//! (or `cargo insta review`) after checking the change is meant.

use proc_macro2::TokenStream;
use quote::quote;

/// Generated code as Rust source.
fn pretty(tokens: TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(error) => panic!("the expansion is not a Rust file ({error}):\n{tokens}"),
    }
}

fn derive(input: TokenStream, expand: fn(&syn::DeriveInput) -> syn::Result<TokenStream>) -> String {
    let input = syn::parse2(input).expect("test input is a type");
    match expand(&input) {
        Ok(tokens) => pretty(tokens),
        Err(error) => panic!("expected an expansion, got {error}"),
    }
}

#[test]
fn event_with_upcasters_and_aliases() {
    insta::assert_snapshot!(derive(
        quote! {
            #[event(
                name = "MoneyDeposited",
                version = 3,
                aliases("FundsAdded"),
                upcast(from = 1, with = v1_to_v2),
                upcast(from = 2, via = DepositedV2),
            )]
            struct MoneyDeposited { cents: u64, currency: String }
        },
        crate::event::expand,
    ));
}

#[test]
fn aggregate_with_a_name() {
    insta::assert_snapshot!(derive(
        quote! {
            #[aggregate(name = "BankAccount")]
            struct BankAccount { balance: u64 }
        },
        crate::aggregate::expand,
    ));
}

#[test]
fn applies_with_two_handlers_one_behind_cfg() {
    let expanded = crate::applies::expand(
        TokenStream::new(),
        quote! {
            impl BankAccount {
                const LIMIT: u64 = 100;
                fn opened(&mut self, e: &AccountOpened) { self.open = true; }
                #[cfg(feature = "audit")]
                fn audited(&mut self, e: &Audited) {}
            }
        },
    );
    insta::assert_snapshot!(pretty(expanded));
}

#[test]
fn read_model_with_two_aggregates_one_handler_behind_cfg() {
    let expanded = crate::read_model::expand(
        quote!(name = "directory"),
        quote! {
            impl Directory {
                #[from(Shop)]
                fn shop(&mut self, e: &Created) { self.shops += 1; }
                #[from(User)]
                fn user(&mut self, e: &user::Created, record: &es_core::EventRecord<'_>) -> Result<(), Refused> { Ok(()) }
                #[cfg(feature = "audit")]
                #[from(Shop)]
                fn audited(&mut self, e: &Audited) {}
            }
        },
    );
    insta::assert_snapshot!(pretty(expanded));
}
