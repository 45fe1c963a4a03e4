use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct OpenedV1 {
    name: String,
}

// Decoded by nothing, but encoded after the first step: it needs `Serialize`.
#[derive(Deserialize)]
struct OpenedV2 {
    owner: String,
}

impl From<OpenedV1> for OpenedV2 {
    fn from(v1: OpenedV1) -> Self {
        Self { owner: v1.name }
    }
}

impl From<OpenedV2> for Opened {
    fn from(v2: OpenedV2) -> Self {
        Self {
            owner: v2.owner,
            tier: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(
    version = 3,
    upcast(from = 1, via = OpenedV1),
    upcast(from = 2, via = OpenedV2)
)]
struct Opened {
    owner: String,
    tier: u8,
}

fn main() {}
