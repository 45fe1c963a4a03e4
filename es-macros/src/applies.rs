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
    /// The visibility and the span of its string.
    vis: Option<(syn::Visibility, Span)>,
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
    let generic = attr::reject_generics(&mut cx, &item.generics, "aggregates", "an aggregate");
    let self_ident = self_ident(&mut cx, item, generic);
    if let Some((_, path, _)) = &item.trait_ {
        cx.error_spanned_by(
            path,
            "`#[applies]` goes on an inherent impl block (`impl MyAggregate { ... }`), not a trait impl",
        );
    }
    if let Some(unsafety) = &item.unsafety {
        cx.error_spanned_by(unsafety, "an `#[applies]` block cannot be `unsafe`");
    }
    let handlers = parse_handlers(&mut cx, item);

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
            quote! {
                #item

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
fn self_ident<'a>(cx: &mut Ctxt, item: &'a syn::ItemImpl, generic: bool) -> Option<&'a syn::Ident> {
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
    let (vis, vis_span) = args
        .vis
        .clone()
        .unwrap_or_else(|| (syn::parse_quote!(pub), Span::call_site()));
    // A `vis` narrower than the aggregate's makes this associated type leak a private
    // enum: rustc then points at the `vis` string.
    let event_assoc = quote_spanned!(vis_span=> type Event = #enum_ident;);
    let derives = args
        .derives
        .clone()
        .unwrap_or_else(|| vec![syn::parse_quote!(Debug), syn::parse_quote!(Clone)]);
    let derive_attr = if derives.is_empty() {
        TokenStream::new()
    } else {
        quote!(#[derive(#(#derives),*)])
    };

    let variants: Vec<&syn::Ident> = handlers.iter().map(|h| &h.variant).collect();
    let events: Vec<&syn::TypePath> = handlers.iter().map(|h| h.event).collect();
    let methods: Vec<&syn::Ident> = handlers.iter().map(|h| h.method).collect();
    // `<E as Event>` spanned on the user's type: "`E` is not an event" points there.
    // `<E as Event>` spanned on the user's type: "`E` is not an event" points there. Every
    // use (the name checks too) is spanned alike, so rustc reports it once.
    let as_event: Vec<TokenStream> = events
        .iter()
        .map(|ty| quote_spanned!(ty.span()=> <#ty as #krate::Event>))
        .collect();

    let enum_doc = format!("The events of [`{self_ident}`], generated by `#[applies]`.");
    let variant_docs = handlers.iter().map(|h| {
        format!(
            "`{}`, applied by `{}::{}`.",
            type_key(h.event),
            self_ident,
            h.method
        )
    });

    // A clash of stored names is found by const evaluation; the error is spanned on the
    // later handler's event type and names both events.
    let name_checks = pairs(handlers.len()).map(|(i, j)| {
        let (ta, tb) = (handlers[i].event, handlers[j].event);
        let (na, nb) = (type_key(ta), type_key(tb));
        let both = format!("events `{na}` and `{nb}` of aggregate `{self_ident}`");
        let same_name = format!(
            "{both} have the same stored name, so their stored events could not be told apart; give one of them a distinct `#[event(name = \"...\")]`"
        );
        let first_alias = format!(
            "an alias of event `{na}` is the stored name of event `{nb}`, both handled by aggregate `{self_ident}`; remove the alias from `{na}` or rename `{nb}` with `#[event(name = \"...\")]`"
        );
        let second_alias = format!(
            "an alias of event `{nb}` is the stored name of event `{na}`, both handled by aggregate `{self_ident}`; remove the alias from `{nb}` or rename `{na}` with `#[event(name = \"...\")]`"
        );
        let shared_alias = format!(
            "{both} share an alias, so their stored events could not be told apart; remove it from one of them"
        );
        let [same_name, first_alias, second_alias, shared_alias] =
            [same_name, first_alias, second_alias, shared_alias]
                .map(|message| message.replace('{', "{{").replace('}', "}}"));
        let (ea, eb) = (&as_event[i], &as_event[j]);
        // The panic's location is where rustc reports the failed evaluation.
        let panic = |message: &str| attr::respan(quote!(#core::panic!(#message)), tb.span());
        let arms = [
            (quote!(#private::SAME_NAME), panic(&same_name)),
            (quote!(#private::FIRST_ALIAS_IS_SECOND_NAME), panic(&first_alias)),
            (quote!(#private::SECOND_ALIAS_IS_FIRST_NAME), panic(&second_alias)),
            (quote!(#private::SHARED_ALIAS), panic(&shared_alias)),
        ]
        .into_iter()
        .map(|(code, panic)| quote!(#code => #panic,));
        quote! {
            const _: () = match #private::name_clash(
                #ea::EVENT_TYPE,
                #ea::ALIASES,
                #eb::EVENT_TYPE,
                #eb::ALIASES,
            ) {
                #(#arms)*
                _ => {}
            };
        }
    });

    quote! {
        #item

        #[doc = #enum_doc]
        #derive_attr
        // Variants are named after the event types, whatever their case.
        #[allow(private_interfaces, non_camel_case_types, clippy::large_enum_variant)]
        #vis enum #enum_ident {
            #(
                #[doc = #variant_docs]
                #variants(#events),
            )*
        }

        #(#name_checks)*

        #[doc(hidden)]
        const _: () = {
            #(
                #[automatically_derived]
                impl #core::convert::From<#events> for #enum_ident {
                    #[inline]
                    fn from(__es_event: #events) -> Self {
                        Self::#variants(__es_event)
                    }
                }

                #[automatically_derived]
                impl #krate::IntoEvents<#enum_ident> for #events {
                    #[inline]
                    fn push_into(self, __es_out: &mut #private::Vec<#enum_ident>) {
                        __es_out.push(#enum_ident::#variants(self));
                    }
                }
            )*

            #[automatically_derived]
            impl #krate::IntoEvents<#enum_ident> for #enum_ident {
                #[inline]
                fn push_into(self, __es_out: &mut #private::Vec<#enum_ident>) {
                    __es_out.push(self);
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
                        #(Self::#variants(__es_event) => #private::to_value(__es_event),)*
                    }
                }

                fn from_stored(
                    __es_event_type: &str,
                    __es_version: u32,
                    __es_payload: &#private::Value,
                ) -> #core::result::Result<Self, #private::DecodeError> {
                    #(
                        if #private::is_named(__es_event_type, #as_event::EVENT_TYPE, #as_event::ALIASES) {
                            return #private::decode_event::<#events>(__es_event_type, __es_version, __es_payload)
                                .map(Self::#variants);
                        }
                    )*
                    #core::result::Result::Err(#private::DecodeError::UnknownEventType {
                        event_type: #private::ToOwned::to_owned(__es_event_type),
                        known: <Self as #krate::EventEnum>::EVENT_TYPES,
                    })
                }
            }

            #[automatically_derived]
            impl #krate::EventHandlers for #self_ty {
                #event_assoc

                #[inline]
                fn apply_event(&mut self, __es_event: &#enum_ident) {
                    match __es_event {
                        #(#enum_ident::#variants(__es_event) => self.#methods(__es_event),)*
                    }
                }
            }
        };
    }
}

/// Every unordered pair of indices below `n`.
fn pairs(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).flat_map(move |i| (i + 1..n).map(move |j| (i, j)))
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;

    use super::{expand, expand_impl};
    use crate::test_helpers::{assert_errors, compact, messages};

    /// The errors of `#[applies(args)]` on `item`, and the code emitted next to them.
    fn fail(args: TokenStream, item: TokenStream) -> (Vec<String>, String) {
        let item = syn::parse2(item).expect("test input is an impl block");
        match expand_impl(args, &item) {
            Ok(tokens) => panic!("expected errors, got:\n{tokens}"),
            Err((error, fallback)) => (messages(&error), compact(&fallback)),
        }
    }

    fn pass(args: TokenStream, item: TokenStream) -> String {
        let item = syn::parse2(item).expect("test input is an impl block");
        match expand_impl(args, &item) {
            Ok(tokens) => compact(&tokens),
            Err((error, _)) => panic!("expected an expansion, got {:?}", messages(&error)),
        }
    }

    fn account(handlers: TokenStream) -> TokenStream {
        quote! { impl Account { #handlers } }
    }

    #[test]
    fn generates_enum_conversions_decoder_and_dispatch() {
        let out = pass(
            quote!(),
            account(quote! {
                fn opened(&mut self, e: &Opened) {}
                fn deposited(&mut self, e: &events::Deposited) {}
            }),
        );
        // The user's impl is kept.
        assert!(
            out.contains("implAccount{fnopened(&mutself,e:&Opened){}"),
            "{out}"
        );
        assert!(out.contains("#[derive(Debug,Clone)]"), "{out}");
        assert!(out.contains("pubenumAccountEvent{"), "{out}");
        assert!(out.contains("Opened(Opened),"), "{out}");
        assert!(out.contains("Deposited(events::Deposited),"), "{out}");
        assert!(
            out.contains(
                "impl::es_core::__private::core::convert::From<events::Deposited>forAccountEvent"
            ),
            "{out}"
        );
        assert!(
            out.contains("impl::es_core::IntoEvents<AccountEvent>forOpened"),
            "{out}"
        );
        assert!(
            out.contains("impl::es_core::EventEnumforAccountEvent"),
            "{out}"
        );
        assert!(
            out.contains("AccountEvent::Opened(__es_event)=>self.opened(__es_event),"),
            "{out}"
        );
        assert!(
            out.contains("AccountEvent::Deposited(__es_event)=>self.deposited(__es_event),"),
            "{out}"
        );
        // One name check for the one pair.
        assert_eq!(out.matches("name_clash(").count(), 1, "{out}");
    }

    #[test]
    fn name_checks_cover_every_pair() {
        let out = pass(
            quote!(),
            account(quote! {
                fn a(&mut self, e: &A) {}
                fn b(&mut self, e: &B) {}
                fn c(&mut self, e: &C) {}
                fn d(&mut self, e: &D) {}
            }),
        );
        assert_eq!(out.matches("name_clash(").count(), 6, "{out}");
    }

    #[test]
    fn options_rename_the_enum_and_replace_its_derives() {
        let out = pass(
            quote!(
                event_enum = Changes,
                vis = "pub(crate)",
                derive(Debug, serde::Serialize),
                crate = "rt"
            ),
            account(quote! { fn opened(&mut self, e: &Opened) {} }),
        );
        assert!(out.contains("#[derive(Debug,serde::Serialize)]"), "{out}");
        assert!(out.contains("pub(crate)enumChanges{"), "{out}");
        assert!(!out.contains("es_core"), "{out}");
        let none = pass(
            quote!(derive()),
            account(quote! { fn opened(&mut self, e: &Opened) {} }),
        );
        assert!(!none.contains("#[derive("), "{none}");
    }

    #[test]
    fn every_bad_argument_is_reported_in_one_call() {
        let (errors, _) = fail(
            quote!(
                colour = 1,
                event_enum = A,
                event_enum = B,
                vis = "public",
                crate = "1"
            ),
            account(quote! { fn opened(&mut self, e: &Opened) {} }),
        );
        assert_errors(
            &errors,
            &[
                "unknown attribute `colour` in `#[applies(...)]`",
                "duplicate attribute `event_enum`",
                "`public` is not a visibility",
                "`1` is not a path",
            ],
        );
    }

    #[test]
    fn every_bad_handler_is_reported_and_the_good_ones_still_generated() {
        let (errors, fallback) = fail(
            quote!(),
            account(quote! {
                fn opened(&mut self, e: &Opened) {}
                fn by_value(&mut self, e: Deposited) {}
                async fn not_async(&self, e: &Closed) -> u8 { 0 }
                fn again(&mut self, e: &Opened) {}
                const LIMIT: u8 = 1;
            }),
        );
        assert_errors(
            &errors,
            &[
                "take the event by shared reference, `&Deposited`",
                "event handlers cannot be `async`",
                "event handlers return nothing",
                "an event handler takes `&mut self`",
                "event `Opened` already has a handler, `opened`",
                "only event handlers belong in an `#[applies]` block",
            ],
        );
        assert!(fallback.contains("pubenumAccountEvent{"), "{fallback}");
        assert!(fallback.contains("Opened(Opened),"), "{fallback}");
        assert!(!fallback.contains("Closed("), "{fallback}");
    }

    #[test]
    fn signature_checks() {
        let cases = [
            (
                quote!(
                    fn f(&mut self) {}
                ),
                "takes the event as its one argument",
            ),
            (
                quote!(
                    fn f(e: &E) {}
                ),
                "takes `&mut self` first",
            ),
            (
                quote!(
                    fn f(self: &mut Self, e: &E) {}
                ),
                "takes `&mut self`",
            ),
            (
                quote!(
                    fn f(&mut self, a: &E, b: &F) {}
                ),
                "exactly one argument",
            ),
            (
                quote!(
                    fn f(&mut self, e: &mut E) {}
                ),
                "take the event by shared reference, `&E`",
            ),
            (
                quote!(
                    fn f<T>(&mut self, e: &E) {}
                ),
                "cannot be generic",
            ),
            (
                quote!(
                    fn f(&mut self, e: &E)
                    where
                        E: Copy,
                    {
                    }
                ),
                "cannot be generic",
            ),
            (
                quote!(
                    const fn f(&mut self, e: &E) {}
                ),
                "cannot be `const`",
            ),
            (
                quote!(
                    unsafe fn f(&mut self, e: &E) {}
                ),
                "cannot be `unsafe`",
            ),
            (
                quote!(
                    extern "C" fn f(&mut self, e: &E) {}
                ),
                "cannot be `extern`",
            ),
            (
                quote!(
                    fn f(&mut self, e: &Vec<E>) {}
                ),
                "generic event types are not supported",
            ),
            (
                quote!(
                    fn f(&mut self, e: &(E, F)) {}
                ),
                "named struct or enum type",
            ),
            (
                quote!(
                    fn f(&mut self, e: &<E as T>::X) {}
                ),
                "named struct or enum type",
            ),
            (
                quote!(
                    fn f(&mut self, e: &dyn E) {}
                ),
                "named struct or enum type",
            ),
            (
                quote!(
                    fn f(&mut self, e: &Self) {}
                ),
                "cannot be its own event",
            ),
            (
                quote!(
                    fn f(&mut self, (a, b): &(E, F)) {}
                ),
                "named struct or enum type",
            ),
        ];
        for (handler, expected) in cases {
            let (errors, _) = fail(quote!(), account(handler));
            assert_errors(&errors, &[expected]);
        }
        // `-> ()` is no return value.
        pass(
            quote!(),
            account(quote!(
                fn f(&mut self, e: &E) -> () {}
            )),
        );
    }

    #[test]
    fn two_types_with_one_name_would_be_one_variant() {
        let (errors, _) = fail(
            quote!(),
            account(quote! {
                fn a(&mut self, e: &v1::Deposited) {}
                fn b(&mut self, e: &v2::Deposited) {}
            }),
        );
        assert_errors(&errors, &["would both be the enum variant `Deposited`"]);
    }

    #[test]
    fn empty_trait_generic_and_unsafe_impls() {
        let (errors, fallback) = fail(quote!(), quote! { impl Account {} });
        assert_errors(&errors, &["needs at least one handler"]);
        // No handler to generate from: the stub link keeps "has no event handlers" away.
        assert!(
            fallback.contains("typeEvent=::es_core::__private::NoEvents;"),
            "{fallback}"
        );

        let (errors, fallback) = fail(
            quote!(),
            quote! { impl Handles for Account { fn a(&mut self, e: &A) {} } },
        );
        assert_errors(&errors, &["not a trait impl"]);
        assert!(fallback.contains("NoEvents"), "{fallback}");

        let (errors, _) = fail(
            quote!(),
            quote! { impl<T> Account<T> { fn a(&mut self, e: &A) {} } },
        );
        assert_errors(&errors, &["generic aggregates are not supported"]);

        let (errors, _) = fail(
            quote!(),
            quote! { unsafe impl Account { fn a(&mut self, e: &A) {} } },
        );
        assert_errors(&errors, &["cannot be `unsafe`"]);
    }

    #[test]
    fn odd_self_types_are_errors_not_panics() {
        for item in [
            quote! { impl &Account { fn a(&mut self, e: &A) {} } },
            quote! { impl (A, B) { fn a(&mut self, e: &A) {} } },
            quote! { impl [u8] { fn a(&mut self, e: &A) {} } },
            quote! { impl dyn Account { fn a(&mut self, e: &A) {} } },
            quote! { impl <A as B>::C { fn a(&mut self, e: &A) {} } },
            quote! { impl Account<u8> { fn a(&mut self, e: &A) {} } },
        ] {
            let (errors, _) = fail(quote!(), item);
            assert_errors(&errors, &["needs a plain, non-generic aggregate type"]);
        }
        // Paths and raw identifiers are fine.
        let out = pass(
            quote!(),
            quote! { impl crate::domain::r#Account { fn a(&mut self, e: &r#type) {} } },
        );
        assert!(out.contains("pubenumAccountEvent{"), "{out}");
        assert!(out.contains("r#type(r#type)"), "{out}");
    }

    #[test]
    fn not_an_impl_block_keeps_the_item_and_reports_one_error() {
        for item in [
            quote! { struct Account { balance: u64 } },
            quote! { enum Account { A } },
            quote! { fn account() {} },
            quote! { mod account {} },
            quote! { trait Account {} },
            quote! { const X: u8 = 1; },
            quote! { macro_rules! m { () => {} } },
        ] {
            let out = expand(quote!(), item.clone());
            let text = compact(&out);
            assert!(text.starts_with(&compact(&item)), "{text}");
            assert_eq!(text.matches("compile_error!").count(), 1, "{text}");
            assert!(text.contains("inherentimplblock"), "{text}");
        }
        // Not even an item: still no panic.
        let out = compact(&expand(quote!(), quote!(1 + 1)));
        assert_eq!(out.matches("compile_error!").count(), 1, "{out}");
    }

    #[test]
    fn errors_are_emitted_with_the_users_impl() {
        let out = compact(&expand(
            quote!(colour = 1),
            account(quote! { fn opened(&mut self, e: &Opened) {} }),
        ));
        assert!(
            out.starts_with("implAccount{fnopened(&mutself,e:&Opened){}}"),
            "{out}"
        );
        assert_eq!(out.matches("compile_error!").count(), 1, "{out}");
        // The valid handler is still generated: no follow-on "not an event of this aggregate".
        assert!(
            out.contains("impl::es_core::IntoEvents<AccountEvent>forOpened"),
            "{out}"
        );
    }
}
