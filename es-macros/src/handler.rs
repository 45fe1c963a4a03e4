//! What `#[applies]` and `#[read_model]` read the same way in their handler blocks: the
//! `cfg`s a handler exists under, the qualifiers no handler has, its `&mut self` and
//! `&Event` arguments, and the key two handlers' types are compared by.

use std::iter::Peekable;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};

use crate::ctxt::Ctxt;
use crate::symbol::{CFG, CFG_ATTR};

/// The predicates under which an item with these attributes exists: one per `#[cfg(p)]`,
/// and `any(not(q), p)` for a `#[cfg_attr(q, cfg(p))]` (nested `cfg_attr` alike). Other
/// attributes, and malformed ones (rustc reports those itself), add nothing.
pub fn cfg_predicates(attrs: &[syn::Attribute]) -> Vec<TokenStream> {
    attrs
        .iter()
        .filter_map(|attribute| match &attribute.meta {
            syn::Meta::List(list) => cfg_predicate(list),
            _ => None,
        })
        .collect()
}

fn cfg_predicate(list: &syn::MetaList) -> Option<TokenStream> {
    use syn::punctuated::Punctuated;
    if list.path.is_ident(CFG) {
        return Some(list.tokens.clone());
    }
    if !list.path.is_ident(CFG_ATTR) {
        return None;
    }
    let metas = list
        .parse_args_with(Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated)
        .ok()?;
    let mut metas = metas.into_iter();
    let condition = metas.next()?;
    let inner: Vec<TokenStream> = metas
        .filter_map(|meta| match meta {
            syn::Meta::List(list) => cfg_predicate(&list),
            _ => None,
        })
        .collect();
    (!inner.is_empty()).then(|| quote!(any(not(#condition), all(#(#inner),*))))
}

/// Who a handler block belongs to, for the messages [`event_type`] writes.
pub struct HandlerBlock {
    /// How the block's handlers look, appended to each message.
    pub signature_hint: &'static str,
    /// What `Self` is ("the aggregate", "the read model").
    pub owner: &'static str,
    /// Whether a generic event type's message suggests a concrete wrapper event.
    pub suggest_wrapper: bool,
    /// The handlers, for "... cannot be `async`" ("event handlers").
    pub handlers: &'static str,
    /// One handler, for "... takes `&mut self` first" ("an event handler").
    pub handler: &'static str,
    /// Why a handler takes `&mut self` ("it changes the aggregate's state").
    pub why_mut_self: &'static str,
    /// Where the event argument is ("its one argument").
    pub event_argument: &'static str,
}

/// Reports, through `fail`, each qualifier a handler cannot have: `async`, `const`,
/// `unsafe`, `extern` and generics.
pub fn check_qualifiers(
    block: &HandlerBlock,
    sig: &syn::Signature,
    fail: &mut dyn FnMut(&dyn ToTokens, &str),
) {
    let handlers = block.handlers;
    if let Some(token) = &sig.asyncness {
        fail(token, &format!("{handlers} cannot be `async`"));
    }
    if let Some(token) = &sig.constness {
        fail(token, &format!("{handlers} cannot be `const`"));
    }
    if let syn::Safety::Unsafe(token) = &sig.safety {
        fail(token, &format!("{handlers} cannot be `unsafe`"));
    }
    if let Some(abi) = &sig.abi {
        fail(abi, &format!("{handlers} cannot be `extern`"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        fail(&sig.generics, &format!("{handlers} cannot be generic"));
    }
}

/// Reads a handler's `&mut self` and `&Event` arguments, reporting a missing or shared
/// receiver through `fail` (and a bad event type through `cx`); returns the event type and
/// the arguments after it. A missing receiver or event is reported on the parentheses.
pub fn receiver_and_event<'a>(
    cx: &mut Ctxt,
    block: &HandlerBlock,
    sig: &'a syn::Signature,
    fail: &mut dyn FnMut(&dyn ToTokens, &str),
) -> (
    Option<&'a syn::TypePath>,
    Peekable<syn::punctuated::Iter<'a, syn::FnArg>>,
) {
    let handler = block.handler;
    let params = {
        let span = sig.paren_token.span.join();
        quote_spanned!(span=> ())
    };
    let mut inputs = sig.inputs.iter().peekable();
    if let Some(syn::FnArg::Receiver(receiver)) = inputs.peek() {
        let mut_ref = matches!(receiver.kind, syn::ReceiverKind::Reference(_, _, Some(_)));
        if !mut_ref {
            fail(
                receiver,
                &format!("{handler} takes `&mut self`: {}", block.why_mut_self),
            );
        }
        inputs.next();
    } else {
        // The first argument is still checked as the event below.
        fail(&params, &format!("{handler} takes `&mut self` first"));
    }
    let event = match inputs.next() {
        Some(syn::FnArg::Typed(arg)) => event_type(cx, block, &arg.ty),
        _ => {
            fail(
                &params,
                &format!("{handler} takes the event as {}", block.event_argument),
            );
            None
        }
    };
    (event, inputs)
}

/// The event type behind a handler's `&Event` argument, or `None` after an error spanned
/// on it (by value, `&mut`, generic, `Self`, or not a named type).
pub fn event_type<'a>(
    cx: &mut Ctxt,
    block: &HandlerBlock,
    ty: &'a syn::Type,
) -> Option<&'a syn::TypePath> {
    let hint = block.signature_hint;
    let syn::Type::Reference(reference) = ty else {
        cx.error_spanned_by(
            ty,
            format!(
                "take the event by shared reference, `&{}`; {hint}",
                quote!(#ty)
            ),
        );
        return None;
    };
    if let Some(mutability) = &reference.mutability {
        let and = &reference.and_token;
        let elem = &reference.elem;
        cx.error_spanned_by(
            quote!(#and #mutability),
            format!(
                "take the event by shared reference, `&{}`: events are immutable facts; {hint}",
                quote!(#elem)
            ),
        );
        return None;
    }
    match &*reference.elem {
        syn::Type::Path(path) if path.qself.is_none() => {
            if path.path.segments.iter().any(|s| !s.arguments.is_empty()) {
                let message = "generic event types are not supported: an event is stored under one name, which cannot depend on the type arguments";
                if block.suggest_wrapper {
                    cx.error_spanned_by(
                        path,
                        format!(
                            "{message}; handle a concrete event type that holds it instead, such as `#[derive(Event)] struct MyEvent({});`",
                            type_key(path)
                        ),
                    );
                } else {
                    cx.error_spanned_by(path, message);
                }
                return None;
            }
            if path.path.is_ident("Self") {
                cx.error_spanned_by(
                    path,
                    format!("{} cannot be its own event; {hint}", block.owner),
                );
                return None;
            }
            Some(path)
        }
        other => {
            cx.error_spanned_by(
                other,
                format!("the event must be a named struct or enum type; {hint}"),
            );
            None
        }
    }
}

/// A type's tokens without spaces: how two handlers' types are compared.
pub fn type_key(ty: &syn::TypePath) -> String {
    quote!(#ty).to_string().replace(' ', "")
}
