// Without `name`, the stored aggregate type is the struct's name, which must follow the
// stored-name rule.
use es_core::{Aggregate, Event, applies};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Opened;

#[derive(Default, Aggregate)]
struct _Konto;

#[applies]
impl _Konto {
    fn opened(&mut self, _: &Opened) {}
}

fn main() {}
