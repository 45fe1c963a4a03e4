//! Validating `#[derive(Event)]`: the shapes it rejects, and the cross-attribute checks on
//! the parsed [`EventAttrs`] (the upcaster chain, the default name, the aliases).

use std::collections::BTreeMap;

use super::{EventAttrs, Step, StepKind};
use crate::attr;
use crate::ctxt::Ctxt;
use crate::symbol::*;

/// Unions and generics are rejected whatever the attributes say.
pub(super) fn check_shape(cx: &mut Ctxt, input: &syn::DeriveInput) {
    if let syn::Data::Union(data) = &input.data {
        cx.error_spanned_by(
            data.union_token,
            "`#[derive(Event)]` does not support unions: an event must be a struct or an enum that serde can encode",
        );
    }
    attr::reject_generics(
        cx,
        &input.generics,
        "events",
        "an event",
        attr::GENERIC_EVENT_FIX,
    );
}

/// Cross-attribute checks: the chain covers every version below the current one exactly
/// once, and aliases do not repeat the name.
pub(super) fn validate(cx: &mut Ctxt, attrs: &EventAttrs, ident: &syn::Ident) {
    if attrs.name.is_none() {
        attr::check_default_name(cx, ident, "an event name", EVENT);
    }
    if attrs.chain_known {
        validate_chain(cx, attrs, ident);
    }
    let mut names = vec![
        attrs
            .name
            .as_ref()
            .map_or_else(|| attr::default_stored_name(ident), syn::LitStr::value),
    ];
    for alias in &attrs.aliases {
        let value = alias.value();
        if names.contains(&value) {
            let what = if names[0] == value {
                "the event's name"
            } else {
                "another alias"
            };
            cx.error_spanned_by(alias, format!("alias `{value}` repeats {what}; remove it"));
        } else {
            names.push(value);
        }
    }
}

fn validate_chain(cx: &mut Ctxt, attrs: &EventAttrs, ident: &syn::Ident) {
    let mut seen: BTreeMap<u32, &Step> = BTreeMap::new();
    for step in &attrs.steps {
        if step.from >= attrs.version {
            let advice = if attrs.version_span.is_some() {
                "bump `version` or remove this step"
            } else {
                "add `version = N` (the default is 1) or remove this step"
            };
            cx.syn_error(syn::Error::new(
                step.from_span,
                format!(
                    "upcast step from version {} is not below the current version {}: a step migrates a stored version to the next one; {advice}",
                    step.from, attrs.version
                ),
            ));
        } else if seen.insert(step.from, step).is_some() {
            cx.syn_error(syn::Error::new(
                step.from_span,
                format!("two upcast steps from version {}; keep one", step.from),
            ));
        }
    }
    // `seen` holds only steps below the version, so this count cannot underflow. List the
    // first few gaps only: a typo such as `version = 3000000000` must stay a quick error.
    let missing_count = u64::from(attrs.version) - 1 - seen.len() as u64;
    if missing_count > 0 {
        const LISTED: usize = 5;
        let mut missing: Vec<String> = (1..attrs.version)
            .filter(|v| !seen.contains_key(v))
            .take(LISTED)
            .map(|v| format!("{v} -> {}", v + 1))
            .collect();
        if missing_count > LISTED as u64 {
            missing.push(format!("and {} more", missing_count - LISTED as u64));
        }
        let span = attrs.version_span.unwrap_or_else(|| ident.span());
        cx.syn_error(syn::Error::new(
            span,
            format!(
                "the upcaster chain to version {} has a gap: no step for {}; events stored at those versions could not be read. Add `upcast(from = N, with = function)` or `upcast(from = N, via = OldType)` for each",
                attrs.version,
                missing.join(", ")
            ),
        ));
    }
    // A typed step converts into the next version's type, which must be known.
    for step in seen.values() {
        if let StepKind::Via(ty) = &step.kind {
            let next = step.from + 1;
            if next < attrs.version
                && matches!(seen.get(&next).map(|s| &s.kind), Some(StepKind::With(..)))
            {
                cx.error_spanned_by(
                    ty,
                    format!(
                        "a `via` step from version {} converts into the type of version {next}, but version {next} is upcast by a JSON function; use `with` for this step too, or `via` for version {next}",
                        step.from
                    ),
                );
            }
        }
    }
}
