//! Parsing and validating `#[applies]`: its arguments, the self type and every handler's
//! signature. Errors are collected in the [`Ctxt`], each spanned on the user's tokens.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::{AppliesArgs, Handler};
use crate::attr::{self, Once};
use crate::ctxt::Ctxt;
use crate::symbol::*;

pub(super) fn parse_args(cx: &mut Ctxt, args: TokenStream) -> AppliesArgs {
    let mut event_enum = Once::new(EVENT_ENUM);
    let mut vis = Once::new(VIS);
    let mut derives = Once::new(DERIVE);
    let mut krate = Once::new(CRATE);
    let parser = syn::meta::parser(|meta| {
        let span = meta.path.span();
        if meta.path.is_ident(EVENT_ENUM) {
            event_enum.set(cx, span, meta.value()?.parse::<syn::Ident>()?);
        } else if meta.path.is_ident(VIS) {
            let lit: syn::LitStr = meta.value()?.parse()?;
            match lit.parse::<syn::Visibility>() {
                Ok(parsed) => {
                    vis.set(cx, span, (parsed, lit.span()));
                }
                Err(_) => cx.error_spanned_by(
                    &lit,
                    format!(
                        "`{}` is not a visibility; write one such as \"pub\" or \"pub(crate)\"",
                        lit.value()
                    ),
                ),
            }
        } else if meta.path.is_ident(DERIVE) {
            let content;
            syn::parenthesized!(content in meta.input);
            let list = content.parse_terminated(syn::Path::parse_mod_style, syn::Token![,])?;
            derives.set(cx, span, list.into_iter().collect());
        } else if meta.path.is_ident(CRATE) {
            if let Some(path) = attr::parse_crate_path(cx, &meta)? {
                krate.set(cx, span, path);
            }
        } else {
            attr::unknown_key(cx, &meta, "#[applies(...)]", APPLIES_KEYS)?;
        }
        Ok(())
    });
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(error);
    }
    AppliesArgs {
        event_enum: event_enum.get().map(|s| s.value),
        vis: vis.get().map(|s| s.value),
        derives: derives.get().map(|s| s.value),
        krate: krate
            .get()
            .map_or_else(attr::default_crate_path, |s| s.value),
    }
}

/// The aggregate's name: the impl's self type must be a plain path. `generic` says the
/// impl's generics were already reported.
pub(super) fn self_ident<'a>(
    cx: &mut Ctxt,
    item: &'a syn::ItemImpl,
    generic: bool,
) -> Option<&'a syn::Ident> {
    if let syn::Type::Path(syn::TypePath { qself: None, path }) = &*item.self_ty {
        if let Some(last) = path.segments.last() {
            if last.arguments.is_empty() {
                return Some(&last.ident);
            }
            if generic {
                // `impl<T> Account<T>`: one error, on the `<T>`, is enough.
                return None;
            }
        }
    }
    cx.error_spanned_by(
        &item.self_ty,
        "`#[applies]` needs a plain, non-generic aggregate type: `impl MyAggregate { ... }`",
    );
    None
}

pub(super) fn parse_handlers<'a>(cx: &mut Ctxt, item: &'a syn::ItemImpl) -> Vec<Handler<'a>> {
    let mut handlers: Vec<Handler<'a>> = Vec::new();
    for impl_item in &item.items {
        let syn::ImplItem::Fn(method) = impl_item else {
            cx.error_spanned_by(
                impl_item,
                "only event handlers belong in an `#[applies]` block; move this item to another `impl` block",
            );
            continue;
        };
        let Some(handler) = parse_handler(cx, method) else {
            continue;
        };
        let key = type_key(handler.event);
        if let Some(first) = handlers.iter().find(|h| type_key(h.event) == key) {
            cx.error_spanned_by(
                handler.event,
                format!(
                    "event `{key}` already has a handler, `{}`; an event is applied by exactly one handler",
                    first.method
                ),
            );
        } else if let Some(first) = handlers.iter().find(|h| h.variant == handler.variant) {
            cx.error_spanned_by(
                handler.event,
                format!(
                    "this event and `{}` (handled by `{}`) would both be the enum variant `{}`; rename one of the event types",
                    type_key(first.event),
                    first.method,
                    handler.variant
                ),
            );
        } else {
            handlers.push(handler);
        }
    }
    if handlers.is_empty() && !cx.has_errors() {
        cx.error_spanned_by(
            &item.self_ty,
            "an `#[applies]` block needs at least one handler: `fn on_x(&mut self, event: &X)`",
        );
    }
    handlers
}

const SIGNATURE_HINT: &str = "an event handler looks like `fn name(&mut self, event: &SomeEvent)`";

fn parse_handler<'a>(cx: &mut Ctxt, method: &'a syn::ImplItemFn) -> Option<Handler<'a>> {
    let sig = &method.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    let mut fail = |tokens: &dyn quote::ToTokens, message: &str| {
        errors.push(syn::Error::new_spanned(
            tokens,
            format!("{message}; {SIGNATURE_HINT}"),
        ));
    };
    if let Some(token) = &sig.asyncness {
        fail(token, "event handlers cannot be `async`");
    }
    if let Some(token) = &sig.constness {
        fail(token, "event handlers cannot be `const`");
    }
    if let Some(token) = &sig.unsafety {
        fail(token, "event handlers cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        fail(abi, "event handlers cannot be `extern`");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        fail(&sig.generics, "event handlers cannot be generic");
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        let unit = matches!(&**ty, syn::Type::Tuple(t) if t.elems.is_empty());
        if !unit {
            fail(
                ty,
                "event handlers return nothing: applying an event cannot fail, validate in the command instead",
            );
        }
    }
    // `(...)`: where a missing receiver or event argument is reported.
    let params = {
        let span = sig.paren_token.span.join();
        quote_spanned!(span=> ())
    };
    let mut inputs = sig.inputs.iter().peekable();
    if let Some(syn::FnArg::Receiver(receiver)) = inputs.peek() {
        let mut_ref = receiver.reference.is_some()
            && receiver.mutability.is_some()
            && receiver.colon_token.is_none();
        if !mut_ref {
            fail(
                receiver,
                "an event handler takes `&mut self`: it changes the aggregate's state",
            );
        }
        inputs.next();
    } else {
        // The first argument is still checked as the event below.
        fail(&params, "an event handler takes `&mut self` first");
    }
    let event = match inputs.next() {
        Some(syn::FnArg::Typed(arg)) => event_type(cx, &arg.ty),
        _ => {
            fail(
                &params,
                "an event handler takes the event as its one argument",
            );
            None
        }
    };
    if let Some(extra) = inputs.next() {
        fail(
            extra,
            "an event handler takes exactly one argument, the event",
        );
    }
    let ok = errors.is_empty();
    for error in errors {
        cx.syn_error(error);
    }
    let event = event?;
    if !ok {
        return None;
    }
    let variant = event.path.segments.last()?.ident.clone();
    Some(Handler {
        method: &sig.ident,
        event,
        variant,
    })
}

/// The event type behind `&Event`.
fn event_type<'a>(cx: &mut Ctxt, ty: &'a syn::Type) -> Option<&'a syn::TypePath> {
    let syn::Type::Reference(reference) = ty else {
        cx.error_spanned_by(
            ty,
            format!(
                "take the event by shared reference, `&{}`; {SIGNATURE_HINT}",
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
                "take the event by shared reference, `&{}`: events are immutable facts; {SIGNATURE_HINT}",
                quote!(#elem)
            ),
        );
        return None;
    }
    match &*reference.elem {
        syn::Type::Path(path) if path.qself.is_none() => {
            if path.path.segments.iter().any(|s| !s.arguments.is_empty()) {
                cx.error_spanned_by(
                    path,
                    "generic event types are not supported: an event is stored under one name, so it must be one concrete type",
                );
                return None;
            }
            if path.path.is_ident("Self") {
                cx.error_spanned_by(
                    path,
                    format!("the aggregate cannot be its own event; {SIGNATURE_HINT}"),
                );
                return None;
            }
            Some(path)
        }
        other => {
            cx.error_spanned_by(
                other,
                format!("the event must be a named struct or enum type; {SIGNATURE_HINT}"),
            );
            None
        }
    }
}

pub(super) fn type_key(ty: &syn::TypePath) -> String {
    quote!(#ty).to_string().replace(' ', "")
}
