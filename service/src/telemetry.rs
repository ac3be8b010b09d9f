//! Logging set up once. `RUST_LOG` overrides the default filter; `h2`, `hyper` and `tonic`
//! stay at `warn`. Spans and events carry ids, never tokens or personal emails.

use tracing_subscriber::{EnvFilter, fmt};

pub const DEFAULT_FILTER: &str = "info,h2=warn,hyper=warn,hyper_util=warn,tonic=warn,tower=warn,reqwest=warn,sled=warn";

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // A second init (tests) keeps the first subscriber.
    let _ = fmt().with_env_filter(filter).with_target(true).try_init();
}
