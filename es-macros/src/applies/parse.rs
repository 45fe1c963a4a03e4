//! Parsing and validating `#[applies]`: its arguments, the self type and every handler's
//! signature. Errors are collected in the [`Ctxt`], each spanned on the user's tokens.

use proc_macro2::TokenStream;
use syn::spanned::Spanned;

use super::{AppliesArgs, Handler};
use crate::attr::{self, Once};
use crate::ctxt::Ctxt;
use crate::handler::{self, HandlerBlock, cfg_predicates, type_key};
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
    if let syn::Type::Path(syn::TypePath {
        qself: None, path, ..
    }) = &*item.self_ty
    {
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

/// Records an error for every attribute the macros read elsewhere found on an item of the
/// block (`#[event]`, `#[aggregate]`, a nested `#[applies]`), and returns the block without
/// them, so the errors are not followed by "cannot find attribute". `None`: none was found.
pub(super) fn strip_misplaced(cx: &mut Ctxt, item: &syn::ItemImpl) -> Option<syn::ItemImpl> {
    let mut cleaned = item.clone();
    let mut found = false;
    for impl_item in &mut cleaned.items {
        let attrs = match impl_item {
            syn::ImplItem::Fn(f) => &mut f.attrs,
            syn::ImplItem::Const(c) => &mut c.attrs,
            syn::ImplItem::Type(t) => &mut t.attrs,
            syn::ImplItem::Macro(m) => &mut m.attrs,
            _ => continue,
        };
        attrs.retain(|attribute| match misplaced_message(attribute.path()) {
            Some(message) => {
                cx.error_spanned_by(attribute, message);
                found = true;
                false
            }
            None => true,
        });
    }
    found.then_some(cleaned)
}

fn misplaced_message(path: &syn::Path) -> Option<&'static str> {
    if path.is_ident(EVENT) {
        Some(
            "`#[event(...)]` goes on the event type itself (`#[derive(Event)] #[event(...)] struct X`), not inside an `#[applies]` block; a handler names its event by its argument type",
        )
    } else if path.is_ident(AGGREGATE) {
        Some(
            "`#[aggregate(...)]` goes on the aggregate type itself, next to `#[derive(Aggregate)]`, not inside an `#[applies]` block",
        )
    } else if path.segments.last().is_some_and(|s| s.ident == APPLIES) {
        Some(
            "`#[applies]` goes on the impl block only, and it is already there: every method of this block is an event handler; remove this attribute",
        )
    } else {
        None
    }
}

/// The handlers of the block, and whether one of them took the generated enum itself (then
/// the user's block refers to the enum even if no valid handler is left).
pub(super) fn parse_handlers<'a>(
    cx: &mut Ctxt,
    item: &'a syn::ItemImpl,
    enum_ident: Option<&syn::Ident>,
) -> (Vec<Handler<'a>>, bool) {
    let mut handlers: Vec<Handler<'a>> = Vec::new();
    let mut takes_enum = false;
    for impl_item in &item.items {
        let method = match impl_item {
            syn::ImplItem::Fn(method) => method,
            syn::ImplItem::Macro(call) => {
                cx.error_spanned_by(
                    call,
                    "a macro call in an `#[applies]` block could expand to methods that are not checked or dispatched as event handlers; move it to another `impl` block",
                );
                continue;
            }
            // Associated consts and types are ordinary items of the block: kept as written.
            _ => continue,
        };
        let Some(handler) = parse_handler(cx, method) else {
            continue;
        };
        let key = type_key(handler.event);
        if let Some(enum_ident) = enum_ident.filter(|e| names_enum(handler.event, e)) {
            takes_enum = true;
            cx.error_spanned_by(
                handler.event,
                format!(
                    "`{enum_ident}` is the enum `#[applies]` generates from this block, one variant per handler, so it cannot have a handler itself; each handler takes one event type, `fn on_x(&mut self, event: &X)`. To run code for every event, call a shared method from each handler"
                ),
            );
        } else if let Some(first) = handlers.iter().find(|h| type_key(h.event) == key) {
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
    (handlers, takes_enum)
}

/// Whether `ty` names the enum generated next to the block: `Enum` or `self::Enum`. A path
/// into another module may be another type of the same name.
fn names_enum(ty: &syn::TypePath, enum_ident: &syn::Ident) -> bool {
    let segments: Vec<&syn::Ident> = ty.path.segments.iter().map(|s| &s.ident).collect();
    ty.path.leading_colon.is_none()
        && match segments.as_slice() {
            [name] => *name == enum_ident,
            [first, name] => *first == "self" && *name == enum_ident,
            _ => false,
        }
}

const SIGNATURE_HINT: &str = "an event handler looks like `fn name(&mut self, event: &SomeEvent)`";

/// The messages about an aggregate's handlers.
const HANDLER_BLOCK: HandlerBlock = HandlerBlock {
    signature_hint: SIGNATURE_HINT,
    owner: "the aggregate",
    suggest_wrapper: true,
    handlers: "event handlers",
    handler: "an event handler",
    why_mut_self: "it changes the aggregate's state",
    event_argument: "its one argument",
};

fn parse_handler<'a>(cx: &mut Ctxt, method: &'a syn::ImplItemFn) -> Option<Handler<'a>> {
    let sig = &method.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    let mut fail = |tokens: &dyn quote::ToTokens, message: &str| {
        errors.push(syn::Error::new_spanned(
            tokens,
            format!("{message}; {SIGNATURE_HINT}"),
        ));
    };
    handler::check_qualifiers(&HANDLER_BLOCK, sig, &mut fail);
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        let unit = matches!(&**ty, syn::Type::Tuple(t) if t.elems.is_empty());
        if !unit {
            fail(
                ty,
                "event handlers return nothing: applying an event cannot fail, validate in the command instead",
            );
        }
    }
    let (event, mut inputs) = handler::receiver_and_event(cx, &HANDLER_BLOCK, sig, &mut fail);
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
        cfgs: cfg_predicates(&method.attrs),
    })
}
