use super::LinkKind;

/// Why the domain refused something. The API maps each variant to a gRPC code and a stable
/// reason in one place (`api::status`).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DomainError {
    #[error("{field} is invalid: {why}")]
    InvalidField { field: &'static str, why: &'static str },
    #[error("the caller already has an active {kind} link")]
    AlreadyLinked { kind: LinkKind },
    #[error("the personal account is actively linked to another work user for {kind}")]
    LinkedElsewhere { kind: LinkKind },
    #[error("no {kind} link was ever made for this work user")]
    LinkNotFound { kind: LinkKind },
    #[error("the personal side is not a personal Microsoft account")]
    NotAPersonalAccount,
    #[error("the work side cannot own links: {why}")]
    NotAWorkAccount { why: &'static str },
    #[error("no pending flow has this state")]
    FlowNotFound,
    #[error("the flow expired")]
    FlowExpired,
    #[error("the flow was begun by another work user")]
    FlowOwnedByAnotherUser,
    #[error("the caller may not do this")]
    NotPermitted,
    #[error("only a work user may do this")]
    CallerNotAUser,
    #[error("the personal account is not linked for this kind")]
    PersonalAccountNotLinked,
    #[error("the link changed since it was read (etag mismatch)")]
    EtagMismatch,
    #[error("{id} is not in the certification catalog")]
    UnknownCertification { id: String },
    #[error("achievements come from Microsoft Learning or Partner University only")]
    SourceNotRecognised,
    #[error("the redirect URI differs from the one the flow began with")]
    RedirectUriMismatch,
    #[error("no organisation is enrolled with this PartnerID")]
    OrganizationNotFound,
    #[error("an organisation holds at most {max} tenants")]
    OrganizationFull { max: usize },
    #[error("the {kind} association limit ({met:?}) allows the next association from {next_allowed}")]
    AssociationLimited { kind: LinkKind, next_allowed: chrono::DateTime<chrono::Utc>, met: super::LimitMet },
}

pub type Result<T, E = DomainError> = std::result::Result<T, E>;
