// Generated code names std's derives and primitive types by absolute path: a `Debug` in
// scope that is not std's, and types named `u32` and `str`, change nothing. Raw
// identifiers get their stored name without `r#`.
#![allow(non_camel_case_types, dead_code)]

mod events {
    // serde's own derives are not hygienic against a local `str`, so the events live apart
    // from the shadowing below.
    use es_core::{Event, UpcastError};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    #[event(version = 2, upcast(from = 1, with = same))]
    pub struct r#Opened {
        pub n: u32,
    }

    fn same(payload: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
        Ok(payload)
    }
}

mod domain {
    use es_core::{Aggregate, applies};

    use super::events::Opened;

    mod shadow {
        // A `Debug` derive that is not std's: serde's `Serialize` under another name.
        pub use serde::Serialize as Debug;
    }
    use shadow::Debug;

    pub struct u32;
    pub struct str;

    #[derive(Default, Aggregate)]
    pub struct r#Account {
        pub opened: bool,
    }

    #[applies]
    impl r#Account {
        fn opened(&mut self, _: &Opened) {
            self.opened = true;
        }
    }

    /// Proof the `Debug` in scope is serde's derive.
    #[derive(Debug)]
    pub struct Shadowed;
}

use es_core::{Aggregate, EventEnum};

fn main() {
    let event: domain::AccountEvent = events::Opened { n: 1 }.into();
    // std's `Debug` was derived on the enum, not the `Debug` in scope.
    assert!(format!("{event:?}").contains("Opened"));
    assert_eq!(event.event_type(), "Opened");
    assert_eq!(<domain::Account as Aggregate>::AGGREGATE_TYPE, "Account");
    serde_json::to_value(domain::Shadowed).expect("serde's derive");
}
