//! `#[applies]` on an inherent impl block: every method is an event handler. Generates the
//! event enum, `From`/`IntoEvents` conversions, the `apply` dispatch and the decoder.

use proc_macro2::{Span, TokenStream};
use quote::quote;

use crate::attr;
use crate::ctxt::Ctxt;

mod generate;
mod parse;
#[cfg(test)]
mod tests;

use generate::generate;
use parse::{parse_args, parse_handlers, self_ident, strip_misplaced};

/// The `#[applies(...)]` arguments.
pub(super) struct AppliesArgs {
    pub(super) event_enum: Option<syn::Ident>,
    /// The visibility and the span of its string.
    pub(super) vis: Option<(syn::Visibility, Span)>,
    pub(super) derives: Option<Vec<syn::Path>>,
    pub(super) krate: syn::Path,
}

/// One validated handler: `fn method(&mut self, event: &Event)`.
pub(super) struct Handler<'a> {
    pub(super) method: &'a syn::Ident,
    pub(super) event: &'a syn::TypePath,
    pub(super) variant: syn::Ident,
    /// The predicates of the method's `#[cfg(...)]` attributes (a `cfg` inside
    /// `#[cfg_attr(...)]` included): every item generated for the handler carries them, so
    /// it vanishes with the method.
    pub(super) cfgs: Vec<TokenStream>,
}

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let item_impl = match syn::parse2::<syn::ItemImpl>(item.clone()) {
        Ok(item_impl) => item_impl,
        Err(_) => {
            let error = not_an_impl(&item).into_compile_error();
            return quote!(#item #error);
        }
    };
    match expand_impl(args, &item_impl) {
        Ok(tokens) => tokens,
        Err((error, fallback)) => {
            let error = error.into_compile_error();
            quote!(#fallback #error)
        }
    }
}

/// The name of the generated event enum: `event_enum = ...`, or `{Aggregate}Event`.
pub(super) fn enum_ident(args: &AppliesArgs, self_ident: &syn::Ident) -> syn::Ident {
    args.event_enum
        .clone()
        .unwrap_or_else(|| quote::format_ident!("{}Event", self_ident))
}

/// The error for `#[applies]` on something other than an impl block, spanned on the item's
/// keyword and name.
fn not_an_impl(item: &TokenStream) -> syn::Error {
    fn head(keyword: impl quote::ToTokens, ident: &syn::Ident) -> TokenStream {
        quote!(#keyword #ident)
    }
    let (head, name) = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Struct(s)) => (head(s.struct_token, &s.ident), s.ident.to_string()),
        Ok(syn::Item::Enum(e)) => (head(e.enum_token, &e.ident), e.ident.to_string()),
        Ok(syn::Item::Union(u)) => (head(u.union_token, &u.ident), u.ident.to_string()),
        Ok(syn::Item::Fn(f)) => (head(f.sig.fn_token, &f.sig.ident), String::new()),
        Ok(syn::Item::Mod(m)) => (head(m.mod_token, &m.ident), String::new()),
        Ok(syn::Item::Trait(t)) => (head(t.trait_token, &t.ident), String::new()),
        _ => (item.clone(), String::new()),
    };
    let name = if name.is_empty() {
        "MyAggregate".to_owned()
    } else {
        name
    };
    let message = format!(
        "`#[applies]` goes on the aggregate's inherent impl block: `#[applies] impl {name} {{ fn on_x(&mut self, event: &X) {{ ... }} }}`"
    );
    if head.is_empty() {
        syn::Error::new(Span::call_site(), message)
    } else {
        syn::Error::new_spanned(head, message)
    }
}

/// `Ok` with the generated code, or `Err` with every error and the code to emit next to
/// them: the user's impl plus as much of the generated code as is valid, so the errors are
/// not followed by "has no event handlers" or "not an event of this aggregate".
fn expand_impl(
    args: TokenStream,
    item: &syn::ItemImpl,
) -> Result<TokenStream, (syn::Error, TokenStream)> {
    let mut cx = Ctxt::new();
    let args = parse_args(&mut cx, args);
    let cleaned = strip_misplaced(&mut cx, item);
    let item = cleaned.as_ref().unwrap_or(item);
    let generic = attr::reject_generics(
        &mut cx,
        &item.generics,
        "aggregates",
        "an aggregate",
        attr::GENERIC_AGGREGATE_FIX,
    );
    let self_ident = self_ident(&mut cx, item, generic);
    if let Some((path, _)) = &item.trait_ {
        cx.error_spanned_by(
            path,
            "`#[applies]` goes on an inherent impl block (`impl MyAggregate { ... }`), not a trait impl",
        );
    }
    if let Some(unsafety) = &item.unsafety {
        cx.error_spanned_by(unsafety, "an `#[applies]` block cannot be `unsafe`");
    }
    let enum_ident = self_ident.map(|self_ident| enum_ident(&args, self_ident));
    let (handlers, takes_enum) = parse_handlers(&mut cx, item, enum_ident.as_ref());

    let Err(error) = cx.check() else {
        return match self_ident {
            Some(self_ident) => Ok(generate(item, self_ident, &args, &handlers)),
            // self_ident records an error whenever it returns None.
            None => Err((
                syn::Error::new(Span::call_site(), "invalid self type"),
                quote!(#item),
            )),
        };
    };
    let fallback = match self_ident {
        Some(self_ident) if item.trait_.is_none() && !handlers.is_empty() => {
            generate(item, self_ident, &args, &handlers)
        }
        Some(self_ident) => {
            let krate = &args.krate;
            // A handler taking the generated enum still names it in the user's block.
            let empty_enum = match (&enum_ident, takes_enum) {
                (Some(enum_ident), true) => quote! {
                    #[allow(dead_code)]
                    enum #enum_ident {}
                },
                _ => TokenStream::new(),
            };
            quote! {
                #item
                #empty_enum

                #[doc(hidden)]
                const _: () = {
                    #[automatically_derived]
                    impl #krate::EventHandlers for #self_ident {
                        type Event = #krate::__private::NoEvents;
                        fn apply_event(&mut self, event: &Self::Event) {
                            match *event {}
                        }
                    }
                };
            }
        }
        None => quote!(#item),
    };
    Err((error, fallback))
}
