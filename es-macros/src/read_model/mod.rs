//! `#[read_model]` on an inherent impl block: every method handles one event type of one
//! aggregate type. Generates the `ReadModel` impl: its name, the events it handles, an
//! `apply` that decodes only those, and `reset`.

use proc_macro2::{Span, TokenStream};
use quote::quote;

use crate::attr;
use crate::ctxt::Ctxt;

mod generate;
mod parse;
#[cfg(test)]
mod tests;

use generate::{generate, stub};
use parse::{clean_block, parse_args, parse_handlers, self_ident};

/// The `#[read_model(...)]` arguments.
pub(super) struct ReadModelArgs {
    pub(super) name: Option<syn::LitStr>,
    /// `from = Aggregate`: the aggregate of every handler without `#[from(...)]`.
    pub(super) from: Option<syn::TypePath>,
    /// `reset = path`: a `fn(&mut Self)` run instead of `*self = Default::default()`.
    pub(super) reset: Option<syn::ExprPath>,
    pub(super) krate: syn::Path,
}

/// One validated handler: `#[from(A)] fn method(&mut self, event: &E[, record: &EventRecord])`.
pub(super) struct Handler<'a> {
    pub(super) method: &'a syn::Ident,
    pub(super) event: &'a syn::TypePath,
    /// The aggregate, from the handler's `#[from(...)]` or the block's `from = ...`.
    pub(super) aggregate: syn::TypePath,
    /// Where to report that the event is not one of the aggregate's: the `#[from(...)]`.
    pub(super) from_span: Span,
    /// The type of the envelope argument, if the handler takes one.
    pub(super) record: Option<&'a syn::Type>,
    /// The return type, if the handler declares one.
    pub(super) output: Option<&'a syn::Type>,
    /// The predicates of the method's `#[cfg(...)]` attributes: everything generated for
    /// the handler carries them, so it vanishes with the method.
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
    let mut cx = Ctxt::new();
    let args = parse_args(&mut cx, args);
    // The user's block without the attributes this macro reads (`#[from(...)]`) or that
    // do not belong there: emitted in every case, so IDEs and later code keep working.
    let cleaned = clean_block(&mut cx, &item_impl);
    let generic = attr::reject_generics(
        &mut cx,
        &item_impl.generics,
        "read models",
        "a read model",
        "declare one concrete read model per instantiation instead, such as a newtype with its own `#[read_model]` block",
    );
    let self_ident = self_ident(&mut cx, &item_impl, generic);
    if let Some((path, _)) = &item_impl.trait_ {
        cx.error_spanned_by(
            path,
            "`#[read_model]` goes on an inherent impl block (`impl MyReadModel { ... }`), not a trait impl",
        );
    }
    if let Some(unsafety) = &item_impl.unsafety {
        cx.error_spanned_by(unsafety, "a `#[read_model]` block cannot be `unsafe`");
    }
    if let (None, Some(ident)) = (&args.name, self_ident) {
        attr::check_default_name(
            &mut cx,
            ident,
            "a read model name",
            crate::symbol::READ_MODEL,
        );
    }
    let handlers = parse_handlers(&mut cx, &item_impl, &args);
    match (cx.check(), self_ident) {
        (Ok(()), Some(self_ident)) => generate(&cleaned, self_ident, &args, &handlers),
        (result, self_ident) => {
            let error = result
                .err()
                .unwrap_or_else(|| syn::Error::new(Span::call_site(), "invalid self type"))
                .into_compile_error();
            let stub = match self_ident {
                Some(self_ident) if item_impl.trait_.is_none() => stub(&cleaned, self_ident, &args),
                _ => TokenStream::new(),
            };
            quote!(#cleaned #stub #error)
        }
    }
}

/// The error for `#[read_model]` on something other than an impl block, spanned on the
/// item's keyword and name.
fn not_an_impl(item: &TokenStream) -> syn::Error {
    let (head, name) = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Struct(s)) => {
            let (keyword, ident) = (s.struct_token, &s.ident);
            (quote!(#keyword #ident), ident.to_string())
        }
        Ok(syn::Item::Enum(e)) => {
            let (keyword, ident) = (e.enum_token, &e.ident);
            (quote!(#keyword #ident), ident.to_string())
        }
        Ok(syn::Item::Fn(f)) => {
            let (keyword, ident) = (f.sig.fn_token, &f.sig.ident);
            (quote!(#keyword #ident), String::new())
        }
        Ok(syn::Item::Mod(m)) => {
            let (keyword, ident) = (m.mod_token, &m.ident);
            (quote!(#keyword #ident), String::new())
        }
        _ => (item.clone(), String::new()),
    };
    let name = if name.is_empty() {
        "MyReadModel".to_owned()
    } else {
        name
    };
    let message = format!(
        "`#[read_model]` goes on the read model's inherent impl block: `#[read_model] impl {name} {{ #[from(MyAggregate)] fn on_x(&mut self, event: &X) {{ ... }} }}`"
    );
    if head.is_empty() {
        syn::Error::new(Span::call_site(), message)
    } else {
        syn::Error::new_spanned(head, message)
    }
}
