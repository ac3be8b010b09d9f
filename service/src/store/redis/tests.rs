use crate::store::conformance;

conformance::suite!(conformance::redis_store);
