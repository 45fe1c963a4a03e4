//! Expansion tests for `#[applies]`.

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
    assert!(out.contains(
        "#[derive(::es_core::__private::core::fmt::Debug,::es_core::__private::core::clone::Clone)]"
    ), "{out}");
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
        out.contains("AccountEvent::Opened(ref__es_event)=>self.opened(__es_event),"),
        "{out}"
    );
    assert!(
        out.contains("AccountEvent::Deposited(ref__es_event)=>self.deposited(__es_event),"),
        "{out}"
    );
    // The block's type must be an aggregate: the error points at the block, not at a use.
    assert!(
        out.contains("fn__es_requires_aggregate<__EsA:::es_core::Aggregate>(){}let_=__es_requires_aggregate::<Account>;"),
        "{out}"
    );
    // One table of names, one check: the second handler against the first.
    assert_eq!(out.matches("const__ES_EVENTS").count(), 1, "{out}");
    assert_eq!(out.matches("check_stored_names(").count(), 1, "{out}");
    assert!(
        out.contains("check_stored_names(\"Account\",__ES_EVENTS,\"events::Deposited\")"),
        "{out}"
    );
}

#[test]
fn cfg_on_a_handler_is_on_everything_generated_for_it() {
    let out = pass(
        quote!(),
        account(quote! {
            fn opened(&mut self, e: &Opened) {}
            #[cfg(feature = "audit")]
            #[inline]
            fn audited(&mut self, e: &Audited) {}
            #[cfg_attr(test, cfg(unix), inline)]
            fn closed(&mut self, e: &Closed) {}
        }),
    );
    let audit = "#[cfg(feature=\"audit\")]";
    let closed = "#[cfg(any(not(test),all(unix)))]";
    for (cfg, expected) in [
        (audit, "Audited(Audited),"),
        (
            audit,
            "#[automatically_derived]impl::es_core::__private::core::convert::From<Audited>forAccountEvent",
        ),
        (
            audit,
            "#[automatically_derived]impl::es_core::IntoEvents<AccountEvent>forAudited",
        ),
        (audit, "<Auditedas::es_core::Event>::EVENT_TYPE,"),
        (
            audit,
            "Self::Audited(_)=><Auditedas::es_core::Event>::EVENT_TYPE,",
        ),
        (
            audit,
            "Self::Audited(_)=><Auditedas::es_core::Event>::VERSION,",
        ),
        (audit, "Self::Audited(ref__es_event)=>"),
        (
            audit,
            "if::es_core::__private::is_named(__es_event_type,<Auditedas",
        ),
        (audit, "AccountEvent::Audited(ref__es_event)=>self.audited"),
        (closed, "Closed(Closed),"),
        (closed, "AccountEvent::Closed(ref__es_event)=>self.closed"),
    ] {
        assert!(
            out.contains(&format!("{cfg}{expected}")),
            "{cfg}{expected}\n{out}"
        );
    }
    // A handler's entry in the table of names, and its check, carry its cfgs.
    for (cfg, name) in [(audit, "Audited"), (closed, "Closed")] {
        assert!(
            out.contains(&format!(
                "{cfg}(\"{name}\",<{name}as::es_core::Event>::EVENT_TYPE"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{cfg}const_:()=::es_core::__private::check_stored_names(\"Account\",__ES_EVENTS,\"{name}\")"
            )),
            "{out}"
        );
    }
    // Only the cfgs are forwarded, not the handler's other attributes.
    let cfgs = out.matches("#[cfg(").count();
    assert_eq!(
        cfgs,
        out.matches(audit).count() + out.matches(closed).count()
    );
    assert_eq!(out.matches("#[inline]fnaudited").count(), 1, "{out}");
}

#[test]
fn name_checks_are_one_per_handler() {
    let out = pass(
        quote!(),
        account(quote! {
            fn a(&mut self, e: &A) {}
            fn b(&mut self, e: &B) {}
            fn c(&mut self, e: &C) {}
            fn d(&mut self, e: &D) {}
        }),
    );
    // Linear in the handlers: each but the first is checked against those before it.
    assert_eq!(out.matches("check_stored_names(").count(), 3, "{out}");
    for name in ["B", "C", "D"] {
        assert!(out.contains(&format!("__ES_EVENTS,\"{name}\")")), "{out}");
    }
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
            more_handlers!();
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
            "a macro call in an `#[applies]` block",
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

#[test]
fn consts_and_types_are_kept_as_written() {
    let out = pass(
        quote!(),
        account(quote! {
            const LIMIT: u64 = 100;
            type Amount = u64;
            fn opened(&mut self, e: &Opened) {}
        }),
    );
    assert!(
        out.starts_with("implAccount{constLIMIT:u64=100;typeAmount=u64;fnopened"),
        "{out}"
    );
    assert_eq!(out.matches("Opened(Opened),").count(), 1, "{out}");
    // Without a handler, they are still no handler.
    let (errors, _) = fail(quote!(), account(quote! { const LIMIT: u64 = 100; }));
    assert_errors(&errors, &["needs at least one handler"]);
}

#[test]
fn misplaced_attributes_are_reported_and_removed() {
    let (errors, fallback) = fail(
        quote!(),
        account(quote! {
            #[event(name = "Opened")]
            fn opened(&mut self, e: &Opened) {}
            #[doc = "kept"]
            #[applies]
            fn deposited(&mut self, e: &Deposited) {}
            #[es_core::applies]
            #[aggregate(name = "A")]
            const LIMIT: u64 = 1;
        }),
    );
    assert_errors(
        &errors,
        &[
            "`#[event(...)]` goes on the event type itself",
            "`#[applies]` goes on the impl block only",
            "`#[applies]` goes on the impl block only",
            "`#[aggregate(...)]` goes on the aggregate type itself",
        ],
    );
    assert!(
        fallback.starts_with(
            "implAccount{fnopened(&mutself,e:&Opened){}#[doc=\"kept\"]fndeposited(&mutself,e:&Deposited){}constLIMIT"
        ),
        "{fallback}"
    );
    assert!(fallback.contains("Deposited(Deposited),"), "{fallback}");
}

#[test]
fn a_handler_for_the_generated_enum_is_one_error() {
    let (errors, fallback) = fail(
        quote!(),
        account(quote! {
            fn opened(&mut self, e: &Opened) {}
            fn any(&mut self, e: &AccountEvent) {}
        }),
    );
    assert_errors(
        &errors,
        &["`AccountEvent` is the enum `#[applies]` generates"],
    );
    assert!(fallback.contains("pubenumAccountEvent{"), "{fallback}");
    assert!(
        !fallback.contains("AccountEvent(AccountEvent)"),
        "{fallback}"
    );

    // Alone, it still finds the enum it names.
    let (errors, fallback) = fail(
        quote!(event_enum = Changes),
        account(quote! { fn any(&mut self, e: &self::Changes) {} }),
    );
    assert_errors(&errors, &["`Changes` is the enum `#[applies]` generates"]);
    assert!(fallback.contains("enumChanges{}"), "{fallback}");
    assert!(fallback.contains("NoEvents"), "{fallback}");

    // Another module's type of that name may be a real event.
    pass(
        quote!(),
        account(quote! { fn other(&mut self, e: &legacy::AccountEvent) {} }),
    );
}
