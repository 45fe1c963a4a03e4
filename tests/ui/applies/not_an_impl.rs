use es_core::applies;

#[applies]
struct Account {
    balance: u64,
}

fn main() {}
