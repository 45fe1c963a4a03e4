//! Parsing and validating `#[read_model]`: its arguments, the self type, each handler's
//! `#[from(...)]` and signature. Errors are collected in the [`Ctxt`], each spanned on the
//! user's tokens.

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;

use super::{Handler, ReadModelArgs};
use crate::attr::{self, Once};
use crate::ctxt::Ctxt;
use crate::handler::{self, HandlerBlock, cfg_predicates, type_key};
use crate::symbol::*;

pub(super) fn parse_args(cx: &mut Ctxt, args: TokenStream) -> ReadModelArgs {
    let mut name = Once::new(NAME);
    let mut from = Once::new(FROM);
    let mut reset = Once::new(RESET);
    let mut krate = Once::new(CRATE);
    let parser = syn::meta::parser(|meta| {
        let span = meta.path.span();
        if meta.path.is_ident(NAME) {
            if let Some(lit) = attr::parse_stored_name(cx, &meta, "a read model name")? {
                name.set(cx, span, lit);
            }
        } else if meta.path.is_ident(FROM) {
            let ty: syn::Type = meta.value()?.parse()?;
            if let Some(path) = aggregate_path(cx, &ty) {
                from.set(cx, span, path);
            }
        } else if meta.path.is_ident(RESET) {
            reset.set(cx, span, meta.value()?.parse::<syn::ExprPath>()?);
        } else if meta.path.is_ident(CRATE) {
            if let Some(path) = attr::parse_crate_path(cx, &meta)? {
                krate.set(cx, span, path);
            }
        } else {
            attr::unknown_key(cx, &meta, "#[read_model(...)]", READ_MODEL_KEYS)?;
        }
        Ok(())
    });
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(error);
    }
    ReadModelArgs {
        name: name.get().map(|s| s.value),
        from: from.get().map(|s| s.value),
        reset: reset.get().map(|s| s.value),
        krate: krate
            .get()
            .map_or_else(attr::default_crate_path, |s| s.value),
    }
}

/// An aggregate named in `#[from(...)]` or `from = ...`: a plain type path.
fn aggregate_path(cx: &mut Ctxt, ty: &syn::Type) -> Option<syn::TypePath> {
    match ty {
        syn::Type::Path(path)
            if path.qself.is_none()
                && path.path.segments.iter().all(|s| s.arguments.is_empty()) =>
        {
            Some(path.clone())
        }
        other => {
            cx.error_spanned_by(
                other,
                "name the aggregate by its type, such as `#[from(Inventory)]`: a plain, non-generic type with `#[derive(Aggregate)]`",
            );
            None
        }
    }
}

/// The read model's name: the impl's self type must be a plain path. `generic` says the
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
                return None;
            }
        }
    }
    cx.error_spanned_by(
        &item.self_ty,
        "`#[read_model]` needs a plain, non-generic read model type: `impl MyReadModel { ... }`",
    );
    None
}

/// The block as it is emitted: without the `#[from(...)]` attributes of its methods (read
/// here) and without attributes of the other macros, each of which is reported.
pub(super) fn clean_block(cx: &mut Ctxt, item: &syn::ItemImpl) -> syn::ItemImpl {
    let mut cleaned = item.clone();
    for impl_item in &mut cleaned.items {
        let (attrs, is_fn) = match impl_item {
            syn::ImplItem::Fn(f) => (&mut f.attrs, true),
            syn::ImplItem::Const(c) => (&mut c.attrs, false),
            syn::ImplItem::Type(t) => (&mut t.attrs, false),
            syn::ImplItem::Macro(m) => (&mut m.attrs, false),
            _ => continue,
        };
        attrs.retain(|attribute| {
            let path = attribute.path();
            if path.is_ident(FROM) {
                if !is_fn {
                    cx.error_spanned_by(
                        attribute,
                        "`#[from(...)]` goes on a handler method: it names the aggregate whose event the handler takes",
                    );
                }
                return false;
            }
            match misplaced_message(path) {
                Some(message) => {
                    cx.error_spanned_by(attribute, message);
                    false
                }
                None => true,
            }
        });
    }
    cleaned
}

fn misplaced_message(path: &syn::Path) -> Option<&'static str> {
    let last = path.segments.last().map(|s| s.ident.to_string());
    match last.as_deref() {
        Some(EVENT) if path.segments.len() == 1 => Some(
            "`#[event(...)]` goes on the event type itself, not inside a `#[read_model]` block; a handler names its event by its argument type",
        ),
        Some(AGGREGATE) if path.segments.len() == 1 => Some(
            "`#[aggregate(...)]` goes on the aggregate type, not inside a `#[read_model]` block; a handler names its aggregate with `#[from(MyAggregate)]`",
        ),
        Some(APPLIES) => Some(
            "`#[applies]` declares an aggregate's handlers; a `#[read_model]` block's methods are read-model handlers already: remove this attribute",
        ),
        Some(READ_MODEL) => Some(
            "`#[read_model]` goes on the impl block only, and it is already there: every method of this block is a handler; remove this attribute",
        ),
        _ => None,
    }
}

/// The handlers of the block, validated.
pub(super) fn parse_handlers<'a>(
    cx: &mut Ctxt,
    item: &'a syn::ItemImpl,
    args: &ReadModelArgs,
) -> Vec<Handler<'a>> {
    let mut handlers: Vec<Handler<'a>> = Vec::new();
    let mut any_method = false;
    for impl_item in &item.items {
        let method = match impl_item {
            syn::ImplItem::Fn(method) => method,
            syn::ImplItem::Macro(call) => {
                cx.error_spanned_by(
                    call,
                    "a macro call in a `#[read_model]` block could expand to methods that are not checked or dispatched as handlers; move it to another `impl` block",
                );
                continue;
            }
            _ => continue,
        };
        any_method = true;
        let aggregate = handler_aggregate(cx, method, args);
        let Some(handler) = parse_handler(cx, method, aggregate) else {
            continue;
        };
        let key = (type_key(&handler.aggregate), type_key(handler.event));
        if let Some(first) = handlers
            .iter()
            .find(|h| (type_key(&h.aggregate), type_key(h.event)) == key)
        {
            cx.error_spanned_by(
                handler.event,
                format!(
                    "event `{}` of aggregate `{}` already has a handler, `{}`; a read model applies each event with exactly one handler",
                    key.1, key.0, first.method
                ),
            );
        } else {
            handlers.push(handler);
        }
    }
    if !any_method && !cx.has_errors() {
        cx.error_spanned_by(
            &item.self_ty,
            "a `#[read_model]` block needs at least one handler: `#[from(MyAggregate)] fn on_x(&mut self, event: &X)`",
        );
    }
    handlers
}

/// The aggregate of a handler, with the span to report a wrong event on: its
/// `#[from(A)]`, or the block's `from = A`. `None` after recording an error.
fn handler_aggregate(
    cx: &mut Ctxt,
    method: &syn::ImplItemFn,
    args: &ReadModelArgs,
) -> Option<(syn::TypePath, Span)> {
    let mut found: Option<(syn::TypePath, Span)> = None;
    let mut ok = true;
    for attribute in method.attrs.iter().filter(|a| a.path().is_ident(FROM)) {
        let syn::Meta::List(list) = &attribute.meta else {
            cx.error_spanned_by(
                attribute,
                "write the aggregate in parentheses: `#[from(MyAggregate)]`",
            );
            ok = false;
            continue;
        };
        let types = match list.parse_args_with(
            syn::punctuated::Punctuated::<syn::Type, syn::Token![,]>::parse_terminated,
        ) {
            Ok(types) => types,
            Err(error) => {
                cx.syn_error(error);
                ok = false;
                continue;
            }
        };
        if types.len() != 1 {
            cx.error_spanned_by(
                &list.tokens,
                if types.is_empty() {
                    "name the aggregate whose event this handler takes: `#[from(MyAggregate)]`"
                } else {
                    "a handler takes the event of one aggregate: write one handler per aggregate (each may call a shared method)"
                },
            );
            ok = false;
            continue;
        }
        if found.is_some() {
            cx.error_spanned_by(
                attribute,
                "duplicate `#[from(...)]`; a handler takes the event of one aggregate, keep one",
            );
            ok = false;
            continue;
        }
        match types.first().and_then(|ty| aggregate_path(cx, ty)) {
            Some(path) => {
                let span = path.span();
                found = Some((path, span));
            }
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    if found.is_none() {
        if let Some(default) = &args.from {
            found = Some((default.clone(), default.span()));
        }
    }
    if found.is_none() {
        cx.error_spanned_by(
            &method.sig.ident,
            format!(
                "handler `{}` does not say which aggregate its event comes from (two aggregates may record events of the same name); add `#[from(MyAggregate)]` above it, or `#[read_model(from = MyAggregate)]` when every handler reads one aggregate",
                method.sig.ident
            ),
        );
    }
    found
}

/// The messages about a read model's handlers.
const HANDLER_BLOCK: HandlerBlock = HandlerBlock {
    signature_hint: SIGNATURE_HINT,
    owner: "the read model",
    suggest_wrapper: false,
    handlers: "read-model handlers",
    handler: "a read-model handler",
    why_mut_self: "it changes the read model",
    event_argument: "its first argument",
};

const SIGNATURE_HINT: &str = "a read-model handler looks like `fn name(&mut self, event: &SomeEvent)`, or `fn name(&mut self, event: &SomeEvent, record: &es_core::EventRecord<'_>)` to see the envelope";

fn parse_handler<'a>(
    cx: &mut Ctxt,
    method: &'a syn::ImplItemFn,
    aggregate: Option<(syn::TypePath, Span)>,
) -> Option<Handler<'a>> {
    let sig = &method.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    let mut fail = |tokens: &dyn quote::ToTokens, message: &str| {
        errors.push(syn::Error::new_spanned(
            tokens,
            format!("{message}; {SIGNATURE_HINT}"),
        ));
    };
    handler::check_qualifiers(&HANDLER_BLOCK, sig, &mut fail);
    let (event, mut inputs) = handler::receiver_and_event(cx, &HANDLER_BLOCK, sig, &mut fail);
    let record = match inputs.next() {
        Some(syn::FnArg::Typed(arg)) => match &*arg.ty {
            syn::Type::Reference(reference) if reference.mutability.is_none() => Some(&*arg.ty),
            other => {
                fail(
                    other,
                    "the second argument is the stored event's envelope, taken by shared reference: `record: &es_core::EventRecord<'_>`",
                );
                None
            }
        },
        Some(other) => {
            fail(
                other,
                "the second argument is the envelope, `record: &es_core::EventRecord<'_>`",
            );
            None
        }
        None => None,
    };
    if let Some(extra) = inputs.next() {
        fail(
            extra,
            "a read-model handler takes at most two arguments, the event and its envelope",
        );
    }
    let output = match &sig.output {
        syn::ReturnType::Type(_, ty) => Some(&**ty),
        syn::ReturnType::Default => None,
    };
    let ok = errors.is_empty();
    for error in errors {
        cx.syn_error(error);
    }
    let event = event?;
    let (aggregate, from_span) = aggregate?;
    if !ok {
        return None;
    }
    Some(Handler {
        method: &sig.ident,
        event,
        aggregate,
        from_span,
        record,
        output,
        cfgs: cfg_predicates(&method.attrs),
    })
}
