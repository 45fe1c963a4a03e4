//! `#[applies]` on an inherent impl block: every method is an event handler. Generates the
//! event enum, `From`/`IntoEvents` conversions, the `apply` dispatch and the decoder.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::attr::{self, Once};
use crate::ctxt::Ctxt;
use crate::symbol::*;

/// The `#[applies(...)]` arguments.
struct AppliesArgs {
    event_enum: Option<syn::Ident>,
    vis: Option<syn::Visibility>,
    derives: Option<Vec<syn::Path>>,
    krate: syn::Path,
}

/// One validated handler: `fn method(&mut self, event: &Event)`.
struct Handler<'a> {
    method: &'a syn::Ident,
    event: &'a syn::TypePath,
    variant: syn::Ident,
}

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let item_impl = match syn::parse2::<syn::ItemImpl>(item.clone()) {
        Ok(item_impl) => item_impl,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[applies]` goes on an inherent impl block: `#[applies] impl MyAggregate { fn on_x(&mut self, e: &X) { ... } }`",
            );
            let error = error.into_compile_error();
            return quote!(#item #error);
        }
    };
    match expand_impl(args, &item_impl) {
        Ok(tokens) => tokens,
        Err((error, fallback)) => {
            // Keep the user's impl (so IDEs and other code keep working) plus a stub link,
            // so the one real error is not buried under "has no event handlers".
            let error = error.into_compile_error();
            quote!(#item_impl #fallback #error)
        }
    }
}

fn expand_impl(
    args: TokenStream,
    item: &syn::ItemImpl,
) -> Result<TokenStream, (syn::Error, TokenStream)> {
    let mut cx = Ctxt::new();
    let args = parse_args(&mut cx, args);
    let self_ident = self_ident(&mut cx, item);
    if let Some((_, path, _)) = &item.trait_ {
        cx.error_spanned_by(
            path,
            "`#[applies]` goes on an inherent impl block (`impl MyAggregate { ... }`), not a trait impl",
        );
    }
    attr::reject_generics(&mut cx, &item.generics, "aggregate");
    if let Some(unsafety) = &item.unsafety {
        cx.error_spanned_by(unsafety, "an `#[applies]` block cannot be `unsafe`");
    }
    let handlers = parse_handlers(&mut cx, item);

    let fallback = self_ident
        .map(|ident| {
            let krate = &args.krate;
            quote! {
                #[doc(hidden)]
                const _: () = {
                    #[automatically_derived]
                    impl #krate::EventHandlers for #ident {
                        type Event = #krate::__private::NoEvents;
                        fn apply_event(&mut self, event: &Self::Event) { match *event {} }
                    }
                };
            }
        })
        .unwrap_or_default();
    if let Err(error) = cx.check() {
        return Err((error, fallback));
    }
    let Some(self_ident) = self_ident else {
        // self_ident records an error whenever it returns None.
        return Err((syn::Error::new(Span::call_site(), "invalid self type"), fallback));
    };
    Ok(generate(item, self_ident, &args, &handlers))
}

fn parse_args(cx: &mut Ctxt, args: TokenStream) -> AppliesArgs {
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
            let parsed = lit.parse::<syn::Visibility>().map_err(|_| {
                syn::Error::new(lit.span(), "expected a visibility such as \"pub\" or \"pub(crate)\"")
            })?;
            vis.set(cx, span, parsed);
        } else if meta.path.is_ident(DERIVE) {
            let content;
            syn::parenthesized!(content in meta.input);
            let list = content.parse_terminated(syn::Path::parse_mod_style, syn::Token![,])?;
            derives.set(cx, span, list.into_iter().collect());
        } else if meta.path.is_ident(CRATE) {
            krate.set(cx, span, attr::parse_crate_path(&meta)?);
        } else {
            return Err(attr::unknown_key(&meta, "applies", APPLIES_KEYS));
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
        krate: krate.get().map_or_else(attr::default_crate_path, |s| s.value),
    }
}

/// The aggregate's name: the impl's self type must be a plain path.
fn self_ident<'a>(cx: &mut Ctxt, item: &'a syn::ItemImpl) -> Option<&'a syn::Ident> {
    if let syn::Type::Path(syn::TypePath { qself: None, path }) = &*item.self_ty {
        if let Some(last) = path.segments.last() {
            if last.arguments.is_empty() {
                return Some(&last.ident);
            }
        }
    }
    cx.error_spanned_by(
        &item.self_ty,
        "`#[applies]` needs a plain, non-generic aggregate type: `impl MyAggregate { ... }`",
    );
    None
}

fn parse_handlers<'a>(cx: &mut Ctxt, item: &'a syn::ItemImpl) -> Vec<Handler<'a>> {
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
    let mut ok = true;
    let mut fail = |cx: &mut Ctxt, tokens: &dyn quote::ToTokens, message: String| {
        cx.error_spanned_by(tokens, message);
        ok = false;
    };
    if let Some(token) = &sig.asyncness {
        fail(cx, token, format!("event handlers cannot be `async`; {SIGNATURE_HINT}"));
    }
    if let Some(token) = &sig.constness {
        fail(cx, token, format!("event handlers cannot be `const`; {SIGNATURE_HINT}"));
    }
    if let Some(token) = &sig.unsafety {
        fail(cx, token, format!("event handlers cannot be `unsafe`; {SIGNATURE_HINT}"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        fail(cx, &sig.generics, format!("event handlers cannot be generic; {SIGNATURE_HINT}"));
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        let unit = matches!(&**ty, syn::Type::Tuple(t) if t.elems.is_empty());
        if !unit {
            fail(cx, ty, format!(
                "event handlers return nothing: applying an event cannot fail, validate in the command instead; {SIGNATURE_HINT}"
            ));
        }
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(syn::FnArg::Receiver(receiver))
            if receiver.reference.is_some()
                && receiver.mutability.is_some()
                && receiver.colon_token.is_none() => {}
        Some(syn::FnArg::Receiver(receiver)) => fail(cx, receiver, format!(
            "an event handler takes `&mut self`: it changes the aggregate's state; {SIGNATURE_HINT}"
        )),
        _ => fail(cx, &sig.ident, format!(
            "an event handler takes `&mut self` first; {SIGNATURE_HINT}"
        )),
    }
    let event = match inputs.next() {
        Some(syn::FnArg::Typed(arg)) => event_type(cx, &arg.ty),
        _ => {
            fail(cx, &sig.ident, format!("an event handler takes the event as its one argument; {SIGNATURE_HINT}"));
            None
        }
    };
    let extra: Vec<_> = inputs.collect();
    if let Some(first) = extra.first() {
        fail(cx, first, format!("an event handler takes exactly one argument, the event; {SIGNATURE_HINT}"));
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
        cx.error_spanned_by(ty, format!("take the event by shared reference, `&{}`; {SIGNATURE_HINT}", quote!(#ty)));
        return None;
    };
    if let Some(token) = &reference.mutability {
        cx.error_spanned_by(token, format!("take the event by shared reference: events are immutable facts; {SIGNATURE_HINT}"));
        return None;
    }
    match &*reference.elem {
        syn::Type::Path(path) if path.qself.is_none() => {
            if path.path.segments.iter().any(|s| !s.arguments.is_empty()) {
                cx.error_spanned_by(path, "generic event types are not supported: an event is stored under one name, so it must be one concrete type");
                return None;
            }
            Some(path)
        }
        other => {
            cx.error_spanned_by(other, format!("the event must be a named struct or enum type; {SIGNATURE_HINT}"));
            None
        }
    }
}

fn type_key(ty: &syn::TypePath) -> String {
    quote!(#ty).to_string().replace(' ', "")
}

fn generate(
    item: &syn::ItemImpl,
    self_ident: &syn::Ident,
    args: &AppliesArgs,
    handlers: &[Handler<'_>],
) -> TokenStream {
    let krate = &args.krate;
    let private = quote!(#krate::__private);
    let core = quote!(#private::core);
    let self_ty = &item.self_ty;
    let enum_ident = args
        .event_enum
        .clone()
        .unwrap_or_else(|| format_ident!("{}Event", self_ident));
    let vis = args.vis.clone().unwrap_or_else(|| syn::parse_quote!(pub));
    let derives = args.derives.clone().unwrap_or_else(|| {
        vec![syn::parse_quote!(Debug), syn::parse_quote!(Clone)]
    });
    let derive_attr = if derives.is_empty() {
        TokenStream::new()
    } else {
        quote!(#[derive(#(#derives),*)])
    };

    let variants: Vec<&syn::Ident> = handlers.iter().map(|h| &h.variant).collect();
    let events: Vec<&syn::TypePath> = handlers.iter().map(|h| h.event).collect();
    let methods: Vec<&syn::Ident> = handlers.iter().map(|h| h.method).collect();
    // `<E as Event>` spanned on the user's type: "`E` is not an event" points there.
    let as_event: Vec<TokenStream> = events
        .iter()
        .map(|ty| quote_spanned!(ty.span()=> <#ty as #krate::Event>))
        .collect();

    let enum_doc = format!("The events of [`{self_ident}`], generated by `#[applies]`.");
    let variant_docs = handlers.iter().map(|h| {
        format!("`{}`, applied by `{}::{}`.", type_key(h.event), self_ident, h.method)
    });

    let name_checks = pairs(handlers).map(|(a, b)| {
        let (ta, tb) = (a.event, b.event);
        let message = format!(
            "events `{}` and `{}` of aggregate `{}` share a stored name (event type or alias); give one of them a distinct `#[event(name = \"...\")]`",
            type_key(ta), type_key(tb), self_ident
        );
        quote_spanned! {tb.span()=>
            const _: () = #core::assert!(
                !#private::names_overlap(
                    <#ta as #krate::Event>::EVENT_TYPE,
                    <#ta as #krate::Event>::ALIASES,
                    <#tb as #krate::Event>::EVENT_TYPE,
                    <#tb as #krate::Event>::ALIASES,
                ),
                #message
            );
        }
    });

    quote! {
        #item

        #[doc = #enum_doc]
        #derive_attr
        #[allow(private_interfaces, clippy::large_enum_variant)]
        #vis enum #enum_ident {
            #(
                #[doc = #variant_docs]
                #variants(#events),
            )*
        }

        #[doc(hidden)]
        const _: () = {
            #(#name_checks)*

            #(
                #[automatically_derived]
                impl #core::convert::From<#events> for #enum_ident {
                    #[inline]
                    fn from(event: #events) -> Self {
                        Self::#variants(event)
                    }
                }

                #[automatically_derived]
                impl #krate::IntoEvents<#enum_ident> for #events {
                    #[inline]
                    fn push_into(self, out: &mut #private::Vec<#enum_ident>) {
                        out.push(#enum_ident::#variants(self));
                    }
                }
            )*

            #[automatically_derived]
            impl #krate::IntoEvents<#enum_ident> for #enum_ident {
                #[inline]
                fn push_into(self, out: &mut #private::Vec<#enum_ident>) {
                    out.push(self);
                }
            }

            #[automatically_derived]
            impl #krate::EventEnum for #enum_ident {
                const EVENT_TYPES: &'static [&'static str] = &[#(#as_event::EVENT_TYPE),*];

                #[inline]
                fn event_type(&self) -> &'static str {
                    match self {
                        #(Self::#variants(_) => #as_event::EVENT_TYPE,)*
                    }
                }

                #[inline]
                fn event_version(&self) -> u32 {
                    match self {
                        #(Self::#variants(_) => #as_event::VERSION,)*
                    }
                }

                fn to_payload(&self) -> #core::result::Result<#private::Value, #private::JsonError> {
                    match self {
                        #(Self::#variants(event) => #private::to_value(event),)*
                    }
                }

                fn from_stored(
                    event_type: &str,
                    version: u32,
                    payload: &#private::Value,
                ) -> #core::result::Result<Self, #private::DecodeError> {
                    #(
                        if #private::is_named(event_type, #as_event::EVENT_TYPE, #as_event::ALIASES) {
                            return #private::decode_event::<#events>(event_type, version, payload)
                                .map(Self::#variants);
                        }
                    )*
                    #core::result::Result::Err(#private::DecodeError::UnknownEventType {
                        event_type: #private::ToOwned::to_owned(event_type),
                        known: <Self as #krate::EventEnum>::EVENT_TYPES,
                    })
                }
            }

            #[automatically_derived]
            impl #krate::EventHandlers for #self_ty {
                type Event = #enum_ident;

                #[inline]
                fn apply_event(&mut self, event: &#enum_ident) {
                    match event {
                        #(#enum_ident::#variants(event) => self.#methods(event),)*
                    }
                }
            }
        };
    }
}

/// Every unordered pair of handlers.
fn pairs<'h, 'a>(handlers: &'h [Handler<'a>]) -> impl Iterator<Item = (&'h Handler<'a>, &'h Handler<'a>)> {
    handlers
        .iter()
        .enumerate()
        .flat_map(move |(i, a)| handlers[i + 1..].iter().map(move |b| (a, b)))
}
