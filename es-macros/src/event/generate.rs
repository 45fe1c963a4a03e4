//! Generating the `Event` impl: the stored name, version and aliases, and the
//! `upcast_step` dispatch over the upcaster chain.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::{EventAttrs, StepKind};
use crate::attr;

pub(super) fn generate(input: &syn::DeriveInput, attrs: &EventAttrs) -> TokenStream {
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
