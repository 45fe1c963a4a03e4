use es_core::Event;

#[derive(Event)]
union Deposited {
    amount: u64,
    cents: u32,
}

fn main() {}
