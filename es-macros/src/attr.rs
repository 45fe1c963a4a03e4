//! Attribute parsing helpers shared by the three macros.
//!
//! The parsers record every problem in the [`Ctxt`] and keep going; they return `Err` only
//! for a syntax error after which the rest of the attribute cannot be read.

use proc_macro2::{Span, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;

use crate::ctxt::Ctxt;

/// An attribute value together with the tokens it came from (for error spans).
pub struct WithSpan<T> {
    pub value: T,
    pub span: Span,
}

/// A value that may be set at most once.
pub struct Once<T> {
    name: &'static str,
    value: Option<WithSpan<T>>,
}

impl<T> Once<T> {
    pub fn new(name: &'static str) -> Self {
        Self { name, value: None }
    }

    /// Sets the value, or records a "duplicate" error spanned on the second occurrence and
    /// returns `false`.
    pub fn set(&mut self, cx: &mut Ctxt, span: Span, value: T) -> bool {
        if self.value.is_some() {
            cx.syn_error(syn::Error::new(
                span,
                format!("duplicate attribute `{}`; keep one", self.name),
            ));
            false
        } else {
            self.value = Some(WithSpan { value, span });
            true
        }
    }

    pub fn get(self) -> Option<WithSpan<T>> {
        self.value
    }
}

/// Records "unknown attribute" for `meta`'s key and skips its value, so the keys after it
/// are still checked. `context` is how the user wrote the attribute, e.g. `#[event(...)]`.
pub fn unknown_key(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta<'_>,
    context: &str,
    expected: &[&str],
) -> syn::Result<()> {
    let key = meta.path.to_token_stream().to_string().replace(' ', "");
    let suggestion = closest_key(&key, expected).map_or_else(
        || ";".to_owned(),
        |near| format!("; did you mean `{near}`?"),
    );
    cx.syn_error(meta.error(format!(
        "unknown attribute `{key}` in `{context}`{suggestion} expected one of: {}",
        expected.join(", ")
    )));
    skip_value(meta)
}

/// The expected key nearest to a mistyped `key`, if one is near enough to be what the user
/// meant: at most one edit per three characters (a swap of two neighbours is one edit), or
/// the same key in another case.
fn closest_key<'a>(key: &str, expected: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    expected
        .iter()
        .map(|&candidate| (edit_distance(&lower, candidate), candidate))
        .filter(|&(distance, candidate)| distance <= key.len().max(candidate.len()).max(3) / 3)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// The optimal-string-alignment distance: insertions, deletions, substitutions and swaps
/// of two neighbouring characters each count as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: the distance between a[..i] and b[..j].
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// Records an error for every `#[attribute(...)]` on a variant or a field of `data`: the
/// derive reads it only on the type itself, so rustc would accept and ignore it. `what` is
/// the kind of type, e.g. "event".
pub fn reject_misplaced(cx: &mut Ctxt, data: &syn::Data, attribute: &str, what: &str) {
    let mut check = |attrs: &[syn::Attribute], place: &str| {
        for misplaced in attrs.iter().filter(|a| a.path().is_ident(attribute)) {
            cx.error_spanned_by(
                misplaced,
                format!(
                    "`#[{attribute}(...)]` goes on the {what} type itself, not on {place}; move it above the `struct` or `enum`"
                ),
            );
        }
    };
    let fields: Vec<&syn::Field> = match data {
        syn::Data::Struct(data) => data.fields.iter().collect(),
        syn::Data::Enum(data) => {
            for variant in &data.variants {
                check(&variant.attrs, "an enum variant");
            }
            data.variants.iter().flat_map(|v| &v.fields).collect()
        }
        syn::Data::Union(data) => data.fields.named.iter().collect(),
    };
    for field in fields {
        check(&field.attrs, "a field");
    }
}

/// Skips `= value` or `(...)` after a key.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let value = meta.value()?;
        while !value.is_empty() && !value.peek(syn::Token![,]) {
            value.parse::<TokenTree>()?;
        }
    } else if meta.input.peek(syn::token::Paren) {
        // Consumed whole: syn reports tokens left in a group as "unexpected token".
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<proc_macro2::TokenStream>()?;
    }
    Ok(())
}

/// Parses `= "some::path"` into a path (for `crate = "..."`); `None` after recording an
/// error if the string is not a path.
pub fn parse_crate_path(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta<'_>,
) -> syn::Result<Option<syn::Path>> {
    let lit: syn::LitStr = meta.value()?.parse()?;
    match lit.parse::<syn::Path>() {
        Ok(path) => Ok(Some(path)),
        Err(_) => {
            cx.error_spanned_by(
                &lit,
                format!(
                    "`{}` is not a path; write the path to the renamed `es_core` dependency, such as `crate = \"my_es\"`",
                    lit.value()
                ),
            );
            Ok(None)
        }
    }
}

/// Parses `= "Name"`; `None` after recording an error if it is not a valid stored name.
pub fn parse_stored_name(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta<'_>,
    what: &str,
) -> syn::Result<Option<syn::LitStr>> {
    let lit: syn::LitStr = meta.value()?.parse()?;
    match validate_stored_name(&lit.value(), what) {
        Ok(()) => Ok(Some(lit)),
        Err(message) => {
            cx.error_spanned_by(&lit, message);
            Ok(None)
        }
    }
}

/// Parses `= N` for a schema version (`version = N`, `from = N`); `None` after recording an
/// error if it is not an integer of at least 1.
pub fn parse_version(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta<'_>,
    key: &str,
) -> syn::Result<Option<WithSpan<u32>>> {
    let lit: syn::Lit = meta.value()?.parse()?;
    let syn::Lit::Int(int) = &lit else {
        cx.error_spanned_by(
            &lit,
            format!("expected an integer schema version, such as `{key} = 2`"),
        );
        return Ok(None);
    };
    match int.base10_parse::<u32>() {
        Ok(0) => {
            cx.error_spanned_by(int, "schema versions start at 1");
            Ok(None)
        }
        Ok(value) => Ok(Some(WithSpan {
            value,
            span: int.span(),
        })),
        Err(_) => {
            cx.error_spanned_by(
                int,
                format!("expected a schema version between 1 and {}", u32::MAX),
            );
            Ok(None)
        }
    }
}

/// A stored name (event type, alias, aggregate type) lives forever in databases and logs:
/// keep it to one unambiguous token.
pub fn validate_stored_name(name: &str, what: &str) -> Result<(), String> {
    const RULE: &str = "it must start with an ASCII letter and contain only ASCII letters, digits, `_`, `-`, `.` and `:` (at most 128 characters)";
    if name.is_empty() {
        return Err(format!("{what} must not be empty; {RULE}"));
    }
    if name.len() > 128 {
        return Err(format!("{what} `{name}` is too long; {RULE}"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{name}` is not a valid stored name; {RULE}"
        ))
    }
}

/// What to write instead of a generic aggregate, in the "not supported" error.
pub const GENERIC_AGGREGATE_FIX: &str = "declare one concrete aggregate per instantiation instead, such as a newtype `struct UsdAccount(Account<Usd>);` with its own `#[derive(Aggregate)]`, `#[aggregate(name = \"...\")]` and `#[applies]` block";

/// What to write instead of a generic event, in the "not supported" error.
pub const GENERIC_EVENT_FIX: &str = "declare one concrete event per instantiation instead, with its own stored name; its fields may still be generic types, such as `struct UsdDeposited { amount: Money<Usd> }`";

/// Rejects generic parameters: a stored type is one concrete type. `plural` and `one` name
/// the kind of type, e.g. "events" and "an event"; `fix` says what to write instead.
/// Returns whether there were generics.
pub fn reject_generics(
    cx: &mut Ctxt,
    generics: &syn::Generics,
    plural: &str,
    one: &str,
    fix: &str,
) -> bool {
    let message = format!(
        "generic {plural} are not supported: {one} is stored under one name, which cannot depend on the type parameters; {fix}"
    );
    if !generics.params.is_empty() {
        cx.error_spanned_by(generics, message);
        true
    } else if let Some(where_clause) = &generics.where_clause {
        cx.error_spanned_by(where_clause, message);
        true
    } else {
        false
    }
}

/// The default path of the runtime crate in generated code.
pub fn default_crate_path() -> syn::Path {
    syn::parse_quote!(::es_core)
}

/// `tokens` with every span (nested groups included) located at `at`, so that rustc reports
/// errors about generated code on the user's token instead of the macro call site.
///
/// The tokens keep call-site hygiene: they still count as macro output, so lints such as
/// `unused_qualifications` and clippy's leave them alone.
pub fn respan(tokens: impl ToTokens, at: Span) -> proc_macro2::TokenStream {
    fn respan_stream(tokens: proc_macro2::TokenStream, span: Span) -> proc_macro2::TokenStream {
        tokens
            .into_iter()
            .map(|mut tree| {
                if let TokenTree::Group(group) = &tree {
                    let mut new = proc_macro2::Group::new(
                        group.delimiter(),
                        respan_stream(group.stream(), span),
                    );
                    new.set_span(span);
                    tree = TokenTree::Group(new);
                } else {
                    tree.set_span(span);
                }
                tree
            })
            .collect()
    }
    respan_stream(tokens.into_token_stream(), Span::call_site().located_at(at))
}

/// The stored name a type gets when its attribute sets none: its identifier, without `r#`.
pub fn default_stored_name(ident: &syn::Ident) -> String {
    use syn::ext::IdentExt;
    ident.unraw().to_string()
}

/// Checks the default stored name of a type without an explicit `name`, pointing at the
/// type's name: it must follow the same rule as an explicit one.
pub fn check_default_name(cx: &mut Ctxt, ident: &syn::Ident, what: &str, attribute: &str) {
    if let Err(message) = validate_stored_name(&default_stored_name(ident), what) {
        cx.error_spanned_by(
            ident,
            format!(
                "{message}. Without `name`, the stored name is the type's name: set `#[{attribute}(name = \"...\")]`"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::Span;
    use quote::quote;

    use super::{closest_key, edit_distance, respan, validate_stored_name};
    use crate::test_helpers::compact;

    #[test]
    fn stored_names() {
        for ok in [
            "A",
            "MoneyDeposited",
            "bank:Account",
            "a.b-c_d:1",
            &"x".repeat(128),
        ] {
            assert_eq!(validate_stored_name(ok, "a name"), Ok(()), "{ok}");
        }
        for (bad, expected) in [
            ("", "a name must not be empty"),
            (
                "Money Deposited",
                "`Money Deposited` is not a valid stored name",
            ),
            ("1st", "`1st` is not a valid stored name"),
            ("_x", "`_x` is not a valid stored name"),
            ("Dépôt", "`Dépôt` is not a valid stored name"),
            ("a/b", "`a/b` is not a valid stored name"),
            (&"x".repeat(129), "is too long"),
        ] {
            let message = validate_stored_name(bad, "a name").unwrap_err();
            assert!(message.contains(expected), "{bad}: {message}");
            assert!(
                message.contains("must start with an ASCII letter"),
                "{message}"
            );
        }
    }

    #[test]
    fn nearest_keys() {
        let keys = ["name", "version", "upcast", "aliases", "crate"];
        for (typo, expected) in [
            ("nmae", Some("name")),
            ("nam", Some("name")),
            ("NAME", Some("name")),
            ("verison", Some("version")),
            ("alias", Some("aliases")),
            ("rename", Some("name")),
            ("crates", Some("crate")),
            ("renamed", None),
            ("colour", None),
            ("x", None),
            ("", None),
        ] {
            assert_eq!(closest_key(typo, &keys), expected, "{typo}");
        }
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn respan_keeps_the_tokens_and_their_nesting() {
        let tokens = quote!(<A as ::rt::Tr<(B, [C; 1])>>::f({ x }));
        let respanned = respan(&tokens, Span::call_site());
        assert_eq!(compact(&respanned), compact(&tokens));
    }
}
