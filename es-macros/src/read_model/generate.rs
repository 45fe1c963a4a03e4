//! Generating the `ReadModel` impl next to the user's block: the name, the table of handled
//! events, the `apply` dispatch (decoding only handled events), `reset`, and the
//! compile-time check that each handler's event is one its aggregate records.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::{Handler, ReadModelArgs};
use crate::attr;
use crate::handler::type_key;

fn name(args: &ReadModelArgs, self_ident: &syn::Ident) -> String {
    args.name
        .as_ref()
        .map_or_else(|| attr::default_stored_name(self_ident), syn::LitStr::value)
}

fn reset(args: &ReadModelArgs, self_ty: &syn::Type) -> TokenStream {
    let private = {
        let krate = &args.krate;
        quote!(#krate::__private)
    };
    match &args.reset {
        // Typed as a `fn(&mut Self)`: a function of another shape is reported on the path.
        Some(path) => {
            let reset = quote_spanned!(path.span()=> let __es_reset: fn(&mut Self) = #path;);
            quote!(#reset __es_reset(self))
        }
        None => quote_spanned!(self_ty.span()=> #private::DefaultReset::reset_to_default(self)),
    }
}

pub(super) fn generate(
    item: &syn::ItemImpl,
    self_ident: &syn::Ident,
    args: &ReadModelArgs,
    handlers: &[Handler<'_>],
) -> TokenStream {
    let krate = &args.krate;
    let private = quote!(#krate::__private);
    let core = quote!(#private::core);
    let self_ty = &item.self_ty;
    let name = name(args, self_ident);
    let reset = reset(args, self_ty);

    let mut handled = Vec::new();
    let mut checks = Vec::new();
    let mut arms = Vec::new();
    for handler in handlers {
        let event = handler.event;
        let aggregate = &handler.aggregate;
        let method = handler.method;
        let cfgs = &handler.cfgs;
        let cfg = quote!(#(#[cfg(#cfgs)])*);
        // Spanned on the user's types: "`X` is not an event" / "not an aggregate" point there.
        let as_event = quote_spanned!(event.span()=> <#event as #krate::Event>);
        let as_aggregate = quote_spanned!(aggregate.span()=> <#aggregate as #krate::Aggregate>);
        handled.push(quote! {
            #cfg #private::Handled {
                aggregate_type: #as_aggregate::AGGREGATE_TYPE,
                event_type: #as_event::EVENT_TYPE,
                aliases: #as_event::ALIASES,
            }
        });
        let (aggregate_key, event_key) = (type_key(aggregate), type_key(event));
        let aggregate_events = quote_spanned! {aggregate.span()=>
            <<#aggregate as #krate::Aggregate>::Event as #krate::EventEnum>::EVENT_TYPES
        };
        // The call is spanned on the handler's aggregate, where rustc reports the failed
        // evaluation (`check_event_of` is `#[track_caller]`). The names it compares are
        // evaluated first, spanned on the types they come from, so a type that is not an
        // aggregate or not an event is reported once, on that type.
        let check = attr::respan(
            quote!(#private::check_event_of(#name, #aggregate_key, __ES_AGGREGATE_EVENTS, #event_key, __ES_EVENT_TYPE)),
            handler.from_span,
        );
        checks.push(quote! {
            #cfg const _: () = {
                const __ES_AGGREGATE_EVENTS: &[&#core::primitive::str] = #aggregate_events;
                const __ES_EVENT_TYPE: &#core::primitive::str = #as_event::EVENT_TYPE;
                #check
            };
        });
        let record_arg = handler
            .record
            .map(|ty| quote_spanned!(ty.span()=> , __es_record));
        let outcome = quote!(#private::HandlerOutcome::into_outcome(__es_outcome));
        let outcome = match handler.output {
            // Spanned on the return type: "returns `()` or `Result<(), E>`" points there.
            Some(ty) => attr::respan(outcome, ty.span()),
            None => outcome,
        };
        arms.push(quote! {
            #cfg if __es_record.stream.aggregate_type == #as_aggregate::AGGREGATE_TYPE
                && #private::is_named(__es_record.event_type, #as_event::EVENT_TYPE, #as_event::ALIASES)
            {
                let __es_event = #private::decode_event::<#event>(
                    __es_record.event_type,
                    __es_record.schema_version,
                    __es_record.payload,
                )
                .map_err(#private::decode_failed)?;
                let __es_outcome = self.#method(&__es_event #record_arg);
                return #outcome;
            }
        });
    }

    quote! {
        #item

        #[doc(hidden)]
        const _: () = {
            #(#checks)*

            #[automatically_derived]
            impl #krate::ReadModel for #self_ty {
                const NAME: &'static #core::primitive::str = #name;
                const HANDLES: &'static [#private::Handled] = &[#(#handled),*];

                fn apply(
                    &mut self,
                    __es_record: &#krate::EventRecord<'_>,
                ) -> #core::result::Result<(), #private::ApplyError> {
                    #(#arms)*
                    #core::result::Result::Ok(())
                }

                fn reset(&mut self) {
                    #reset
                }
            }
        };
    }
}

/// What to emit next to the errors: a `ReadModel` impl that handles nothing, so uses of
/// the read model do not add "is not a read model" to the real errors.
pub(super) fn stub(
    item: &syn::ItemImpl,
    self_ident: &syn::Ident,
    args: &ReadModelArgs,
) -> TokenStream {
    let krate = &args.krate;
    let private = quote!(#krate::__private);
    let core = quote!(#private::core);
    let self_ty = &item.self_ty;
    let name = name(args, self_ident);
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #krate::ReadModel for #self_ty {
                const NAME: &'static #core::primitive::str = #name;
                const HANDLES: &'static [#private::Handled] = &[];
                fn apply(
                    &mut self,
                    _: &#krate::EventRecord<'_>,
                ) -> #core::result::Result<(), #private::ApplyError> {
                    #core::result::Result::Ok(())
                }
                fn reset(&mut self) {}
            }
        };
    }
}
