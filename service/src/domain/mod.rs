//! Links, flows and their rules. No I/O, no gRPC, no storage: time is a parameter.

mod access;
mod error;
mod flow;
mod ids;
mod link;

pub use access::{ADMIN_ROLES, AppRole, Operation, Principal};
pub use error::{DomainError, Result};
pub use flow::{DEFAULT_FLOW_TTL, Flow, StateHash};
pub use ids::{AccountKey, CONSUMER_TENANT, LinkId, LinkKind, ObjectId, TenantId};
pub use link::{
    Link, LinkMode, LinkPlan, NewLink, PersonalProfile, REASON_REPLACED, REASON_TRANSFERRED, Removal, RemovePlan, plan_link, plan_remove,
};
