//! Compile tests for the `es` macros: `tests/ui/pass` must compile (and run), every other
//! category must fail with the checked-in diagnostic. Regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/event/*.rs");
    t.compile_fail("tests/ui/aggregate/*.rs");
    t.compile_fail("tests/ui/applies/*.rs");
    t.compile_fail("tests/ui/upcast/*.rs");
    t.compile_fail("tests/ui/read_model/*.rs");
}
