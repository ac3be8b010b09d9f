//! Links, flows and their rules. No I/O, no gRPC, no storage: time is a parameter.

mod access;
mod association;
pub(crate) mod compact;
mod credit;
mod error;
mod event;
mod flow;
mod ids;
mod learning;
mod link;
mod organization;

pub use access::{ADMIN_ROLES, AppRole, Membership, Operation, Principal, ServiceApps};
pub use association::{ASSOCIATION_YEAR, AssociationLimit, Associations, LimitMet, MAX_DAYS_BETWEEN, MAX_PER_YEAR};
pub use credit::{Area, AreaId, Catalog, Certification, CertificationId, Credit, DEFAULT_CATALOG, Level, People, Tally};
pub use error::{DomainError, Result};
pub use event::{EventType, LinkEvent};
pub use flow::{DEFAULT_FLOW_TTL, Flow, FlowSecret, SealedFlow, StateHash};
pub(crate) use ids::hex;
pub use ids::{AccountKey, CONSUMER_TENANT, LinkId, LinkKind, ObjectId, TenantId};
pub use learning::{LearningProfile, Mcid, NotCounting, OwnAchievement, own_achievements};
pub use link::{
    KindRules, Link, LinkMode, LinkPlan, NewLink, OnLinkedElsewhere, PersonalProfile, REASON_REPLACED, REASON_TRANSFERRED,
    REASON_USER_REQUEST, REASON_WORK_ACCOUNT_DELETED, Removal, RemovePlan, plan_link, plan_remove,
};
pub use organization::{Organization, PartnerId};
