//! Every attribute keyword the macros accept, in one place.

pub const EVENT: &str = "event";
pub const AGGREGATE: &str = "aggregate";
pub const APPLIES: &str = "applies";
pub const CFG: &str = "cfg";
pub const CFG_ATTR: &str = "cfg_attr";

pub const NAME: &str = "name";
pub const VERSION: &str = "version";
pub const UPCAST: &str = "upcast";
pub const FROM: &str = "from";
pub const WITH: &str = "with";
pub const VIA: &str = "via";
pub const ALIASES: &str = "aliases";
pub const CRATE: &str = "crate";
pub const SNAPSHOT_EVERY: &str = "snapshot_every";
pub const SNAPSHOT_VERSION: &str = "snapshot_version";

pub const EVENT_ENUM: &str = "event_enum";
pub const VIS: &str = "vis";
pub const DERIVE: &str = "derive";

pub const EVENT_KEYS: &[&str] = &[NAME, VERSION, UPCAST, ALIASES, CRATE];
pub const UPCAST_KEYS: &[&str] = &[FROM, WITH, VIA];
pub const AGGREGATE_KEYS: &[&str] = &[NAME, SNAPSHOT_EVERY, SNAPSHOT_VERSION, CRATE];
pub const APPLIES_KEYS: &[&str] = &[EVENT_ENUM, VIS, DERIVE, CRATE];

pub const READ_MODEL: &str = "read_model";
pub const RESET: &str = "reset";
pub const READ_MODEL_KEYS: &[&str] = &[NAME, FROM, RESET, CRATE];
