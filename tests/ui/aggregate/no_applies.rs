use es_core::Aggregate;

#[derive(Default, Aggregate)]
struct Account {
    balance: u64,
}

fn main() {}
