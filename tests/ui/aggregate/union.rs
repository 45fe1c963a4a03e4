use es_core::Aggregate;

#[derive(Aggregate)]
union Account {
    balance: u64,
    cents: u32,
}

fn main() {}
