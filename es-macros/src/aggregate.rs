//! `#[derive(Aggregate)]`: the stored aggregate type and the link to its `#[applies]` block.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::attr::{self, Once};
use crate::ctxt::Ctxt;
use crate::symbol::*;

pub fn expand(input: &syn::DeriveInput) -> syn::Result<TokenStream> {
    let mut cx = Ctxt::new();
    if let syn::Data::Union(data) = &input.data {
        cx.error_spanned_by(
            &data.union_token,
            "`#[derive(Aggregate)]` does not support unions: use a struct (or an enum for a state machine)",
        );
    }
    attr::reject_generics(&mut cx, &input.generics, "aggregate");

    let mut name = Once::new(NAME);
    let mut krate = Once::new(CRATE);
    for attribute in input.attrs.iter().filter(|a| a.path().is_ident(AGGREGATE)) {
        let result = attribute.parse_nested_meta(|meta| {
            let span = meta.path.span();
            if meta.path.is_ident(NAME) {
                name.set(&mut cx, span, attr::parse_stored_name(&meta, "an aggregate name")?);
            } else if meta.path.is_ident(CRATE) {
                krate.set(&mut cx, span, attr::parse_crate_path(&meta)?);
            } else {
                return Err(attr::unknown_key(&meta, AGGREGATE, AGGREGATE_KEYS));
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
    cx.check()?;

    let ident = &input.ident;
    let name = name
        .get()
        .map_or_else(|| ident.to_string(), |lit| lit.value.value());
    let krate = krate.get().map_or_else(attr::default_crate_path, |s| s.value);
    // Spanned on the struct's name, so a missing `#[applies]` block is reported there.
    let handlers = quote_spanned!(ident.span()=> <#ident as #krate::EventHandlers>);
    Ok(quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #krate::Aggregate for #ident {
                const AGGREGATE_TYPE: &'static str = #name;
                type Event = #handlers::Event;
                #[inline]
                fn apply(&mut self, event: &Self::Event) {
                    #handlers::apply_event(self, event);
                }
            }
        };
    })
}
