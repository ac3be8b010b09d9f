//! The only place a `tonic::Status` is built (a test holds every other file to it). Each
//! error maps, in one exhaustive match, to a [`Reason`] of [`messages`]: the right code, a
//! stable machine-readable reason (`ErrorInfo`) and a `LocalizedMessage` for the person in
//! front of the portal, in the caller's `accept-language` (English, French, Korean).
//! Internal detail goes to the log, never to the caller.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::messages::{self, Reason};
use crate::{domain::DomainError, domain::LimitMet, linking::LinkingError, oidc::AuthError, oidc::OidcError, store::StoreError};

pub const ERROR_DOMAIN: &str = "idlink";

/// Errors the API itself finds while parsing a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Linking(#[from] LinkingError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{field}: {why}")]
    InvalidArgument { field: &'static str, why: &'static str },
    #[error("idlinkd is starting")]
    Starting,
    #[error("the call outlasted the server's request timeout")]
    TimedOut,
    #[error("a message of the client's stream could not be read")]
    MalformedStream,
    #[error("the first attempt with this request_id is still running")]
    RequestInFlight,
    #[error("a remembered answer cannot be read back")]
    StoredAnswerUnreadable,
    #[error("the caller used up today's request ids; retry in {retry_after_seconds}s")]
    RequestIdsExhausted { retry_after_seconds: u64 },
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::Linking(LinkingError::Domain(e))
    }
}

pub use idlink_proto::locale::Locale;

/// The domain's refusal inside an error, raised by the orchestration or by the store.
fn domain_error(err: &ApiError) -> Option<&DomainError> {
    match err {
        ApiError::Linking(LinkingError::Domain(d) | LinkingError::Store(StoreError::Domain(d))) => Some(d),
        _ => None,
    }
}

/// The localized text of a refusal, with what it names filled in.
fn localized(err: &ApiError, refusal: &Reason, locale: Locale) -> String {
    match domain_error(err) {
        Some(DomainError::AssociationLimited { next_allowed, met, .. }) => {
            let date = locale.date(*next_allowed);
            match met {
                LimitMet::CoolOff { days } => refusal.text[locale.index()].replace("{days}", &days.to_string()),
                LimitMet::PerYear { count } => messages::ASSOCIATIONS_PER_YEAR_USED[locale.index()].replace("{count}", &count.to_string()),
            }
            .replace("{date}", &date)
        }
        _ => refusal.text[locale.index()].to_owned(),
    }
}

/// What a refusal names for programs (`ErrorInfo.metadata`).
fn error_metadata(err: &ApiError) -> HashMap<String, String> {
    let mut metadata = HashMap::new();
    if let ApiError::InvalidArgument { field, .. } = err {
        metadata.insert("field".to_owned(), (*field).to_owned());
    }
    if let Some(DomainError::AssociationLimited { kind, next_allowed, met }) = domain_error(err) {
        metadata.insert("kind".to_owned(), kind.to_string());
        metadata.insert("next_association_available_at".to_owned(), next_allowed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let limit = match met {
            LimitMet::CoolOff { .. } => "days_between_associations",
            LimitMet::PerYear { .. } => "associations_per_year",
        };
        metadata.insert("limit".to_owned(), limit.to_owned());
    }
    metadata
}

fn describe(err: &ApiError) -> &'static Reason {
    match err {
        ApiError::InvalidArgument { .. } => &messages::INVALID_ARGUMENT,
        ApiError::Starting => &messages::STARTING,
        ApiError::TimedOut => &messages::TIMED_OUT,
        ApiError::MalformedStream => &messages::INVALID_ARGUMENT,
        ApiError::RequestInFlight => &messages::REQUEST_IN_FLIGHT,
        ApiError::StoredAnswerUnreadable => &messages::INTERNAL,
        ApiError::RequestIdsExhausted { .. } => &messages::REQUEST_IDS_EXHAUSTED,
        ApiError::Auth(e) => match e {
            AuthError::MissingToken => &messages::MISSING_TOKEN,
            AuthError::InvalidToken { .. } => &messages::INVALID_TOKEN,
            AuthError::TokenTooLarge => &messages::TOKEN_TOO_LARGE,
            AuthError::ProviderUnavailable => &messages::IDENTITY_PROVIDER_UNAVAILABLE,
            AuthError::Guest => &messages::GUEST_CANNOT_OWN_LINKS,
            AuthError::AppNotAllowed { .. } => &messages::APP_NOT_ALLOWED,
            AuthError::ClientNotAllowed { .. } => &messages::CLIENT_NOT_ALLOWED,
            AuthError::PersonalAccountGuest => &messages::PERSONAL_ACCOUNT_CANNOT_OWN_LINKS,
            AuthError::MissingScope => &messages::INSUFFICIENT_SCOPE,
        },
        ApiError::Linking(e) => describe_linking(e),
    }
}

fn describe_linking(err: &LinkingError) -> &'static Reason {
    match err {
        LinkingError::Domain(d) | LinkingError::Store(StoreError::Domain(d)) => describe_domain(d),
        LinkingError::Store(StoreError::Unavailable { .. }) => &messages::STORE_UNAVAILABLE,
        LinkingError::Store(StoreError::Corrupt { .. } | StoreError::Misconfigured { .. }) => &messages::INTERNAL,
        LinkingError::Store(StoreError::CursorExpired { .. }) => &messages::CURSOR_EXPIRED,
        LinkingError::KindNotConfigured { .. } => &messages::KIND_NOT_CONFIGURED,
        LinkingError::SignInFailed { cancelled: true } => &messages::SIGN_IN_CANCELLED,
        LinkingError::RateLimited { .. } => &messages::RATE_LIMITED,
        LinkingError::TooManyWatchers { .. } => &messages::WATCH_STREAMS_EXHAUSTED,
        LinkingError::RecalculationRunning => &messages::RECALCULATION_RUNNING,
        LinkingError::ShuttingDown => &messages::SHUTTING_DOWN,
        LinkingError::SignInFailed { cancelled: false } => &messages::SIGN_IN_FAILED,
        LinkingError::Oidc(o) => describe_oidc(o),
    }
}

fn describe_oidc(err: &OidcError) -> &'static Reason {
    match err {
        OidcError::Config { .. } => &messages::INTERNAL,
        OidcError::Provider { .. } => &messages::IDENTITY_PROVIDER_UNAVAILABLE,
        OidcError::RedirectUriNotAllowed => &messages::REDIRECT_URI_NOT_ALLOWED,
        OidcError::IssuerMismatch => &messages::ISSUER_MISMATCH,
        OidcError::CodeRejected => &messages::CODE_REJECTED,
        OidcError::UnknownSigningKey | OidcError::IdTokenInvalid { .. } => &messages::ID_TOKEN_INVALID,
        OidcError::NonceMismatch => &messages::NONCE_MISMATCH,
        OidcError::NotAPersonalAccount => &messages::NOT_A_PERSONAL_ACCOUNT,
    }
}

fn describe_domain(err: &DomainError) -> &'static Reason {
    match err {
        DomainError::InvalidField { .. } => &messages::INVALID_ARGUMENT,
        DomainError::AlreadyLinked { .. } => &messages::ALREADY_LINKED,
        DomainError::LinkedElsewhere { .. } => &messages::ACCOUNT_LINKED_ELSEWHERE,
        DomainError::LinkNotFound { .. } => &messages::LINK_NOT_FOUND,
        DomainError::NotAPersonalAccount => &messages::NOT_A_PERSONAL_ACCOUNT,
        DomainError::NotAWorkAccount { .. } => &messages::PERSONAL_ACCOUNT_CANNOT_OWN_LINKS,
        DomainError::FlowNotFound => &messages::FLOW_NOT_FOUND,
        DomainError::FlowExpired => &messages::FLOW_EXPIRED,
        DomainError::FlowOwnedByAnotherUser => &messages::FLOW_OWNED_BY_ANOTHER_USER,
        DomainError::NotPermitted => &messages::NOT_PERMITTED,
        DomainError::CallerNotAUser => &messages::CALLER_NOT_A_USER,
        DomainError::EtagMismatch => &messages::ETAG_MISMATCH,
        DomainError::PersonalAccountNotLinked => &messages::PERSONAL_ACCOUNT_NOT_LINKED,
        DomainError::UnknownCertification { .. } => &messages::UNKNOWN_CERTIFICATION,
        DomainError::SourceNotRecognised => &messages::SOURCE_NOT_RECOGNISED,
        DomainError::OrganizationNotFound => &messages::ORGANIZATION_NOT_FOUND,
        DomainError::OrganizationFull { .. } => &messages::ORGANIZATION_FULL,
        DomainError::RedirectUriMismatch => &messages::REDIRECT_URI_MISMATCH,
        DomainError::AssociationLimited { .. } => &messages::ASSOCIATION_LIMITED,
    }
}

/// A remembered answer given again (idempotent retries): exactly the Status first answered.
pub fn replayed(code: i32, message: String, details: Vec<u8>) -> Status {
    Status::with_details(Code::from(code), message, details.into())
}

/// The stable reason a refusal carries (audit lines name it beside the detail).
pub fn reason(err: &ApiError) -> &'static str {
    describe(err).name
}

/// Builds the Status. Internal detail (store or provider errors) goes to the log, not the caller.
pub fn to_status(err: &ApiError, locale: Locale) -> Status {
    let refusal = describe(err);
    if matches!(refusal.code, Code::Internal | Code::Unavailable) {
        tracing::warn!(reason = refusal.name, error = %err, "request failed");
    } else {
        tracing::debug!(reason = refusal.name, error = %err, "request refused");
    }
    let mut details = ErrorDetails::with_error_info(refusal.name, ERROR_DOMAIN, error_metadata(err));
    details.set_localized_message(locale.tag(), localized(err, refusal, locale));
    match err {
        ApiError::Linking(LinkingError::RateLimited { retry_after_seconds }) | ApiError::RequestIdsExhausted { retry_after_seconds } => {
            details.set_retry_info(Some(std::time::Duration::from_secs(*retry_after_seconds)));
        }
        ApiError::Linking(LinkingError::RecalculationRunning) => {
            details.set_retry_info(Some(std::time::Duration::from_secs(60)));
        }
        _ if matches!(refusal.code, Code::Unavailable | Code::ResourceExhausted) => {
            details.set_retry_info(Some(std::time::Duration::from_secs(5)));
        }
        _ => {}
    }
    // The developer-facing message is the English text plus the field, never internals.
    let message = match err {
        ApiError::InvalidArgument { field, why } => format!("{field}: {why}"),
        _ => localized(err, refusal, Locale::En),
    };
    Status::with_error_details(refusal.code, message, details)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    /// The reason catalogue in docs/design.md lists exactly the reasons idlink gives, each
    /// with its code; and [`messages::ALL`] holds every reason `messages.rs` defines, once.
    #[test]
    fn the_documented_reasons_are_the_reasons_given() {
        let screaming = |code: Code| {
            format!("{code:?}").chars().fold(String::new(), |mut out, c| {
                if c.is_ascii_uppercase() && !out.is_empty() {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
                out
            })
        };
        let given: std::collections::BTreeSet<(String, String)> =
            messages::ALL.iter().map(|r| (r.name.to_owned(), screaming(r.code))).collect();
        let defined = include_str!("messages.rs").matches(": Reason = reason(").count();
        assert_eq!((given.len(), messages::ALL.len()), (defined, defined), "every reason in ALL, once");
        let documented: std::collections::BTreeSet<(String, String)> = include_str!("../../../docs/design.md")
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let reason = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let code = cells.get(2)?;
                code.chars().all(|c| c.is_ascii_uppercase() || c == '_').then(|| (reason.to_owned(), (*code).to_owned()))
            })
            .collect();
        assert!(given.len() > 30, "{given:?}");
        assert_eq!(given, documented, "docs/design.md's Errors table and messages.rs disagree");
    }

    /// No `tonic::Status` is built anywhere but here (replays of remembered ones included).
    #[test]
    fn no_status_is_built_outside_this_file() {
        fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        sources(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
        assert!(files.len() > 30);
        let built = [
            "Status::new",
            "Status::with_",
            "Status::unavailable",
            "Status::internal",
            "Status::invalid_argument",
            "Status::permission_denied",
            "Status::unauthenticated",
            "Status::not_found",
            "Status::failed_precondition",
            "Status::resource_exhausted",
            "Status::already_exists",
            "Status::unknown",
            "Status::cancelled",
            "Status::aborted",
            "Status::out_of_range",
            "Status::unimplemented",
            "Status::deadline_exceeded",
            "Status::data_loss",
            "Status::from_error",
        ];
        for file in files.iter().filter(|f| !f.ends_with("api/status.rs")) {
            let text = std::fs::read_to_string(file).unwrap();
            for construction in built {
                assert!(!text.contains(construction), "{} builds a Status ({construction})", file.display());
            }
        }
    }

    #[test]
    fn a_limited_association_names_its_date_in_each_language() {
        let next_allowed: DateTime<Utc> = "2027-03-01T08:30:00Z".parse().unwrap();
        let kind = crate::domain::LinkKind::MicrosoftLearning;
        let cool_off = ApiError::from(DomainError::AssociationLimited { kind, next_allowed, met: LimitMet::CoolOff { days: 30 } });
        let said = |err: &ApiError, locale| {
            let status = to_status(err, locale);
            assert_eq!(status.code(), Code::FailedPrecondition);
            let details = status.get_error_details();
            let info = details.error_info().unwrap();
            assert_eq!(info.reason, "ASSOCIATION_LIMITED");
            assert_eq!(info.metadata["next_association_available_at"], "2027-03-01T08:30:00Z");
            assert_eq!(info.metadata["kind"], "microsoft_learning");
            (details.localized_message().unwrap().message.clone(), info.metadata["limit"].clone())
        };
        assert_eq!(
            said(&cool_off, Locale::En),
            (
                "You've attempted to associate with a partner organization. However, we require a period of 30 days between \
                 associations. Your next available date for a subsequent association is March 1, 2027."
                    .to_owned(),
                "days_between_associations".to_owned()
            )
        );
        assert!(said(&cool_off, Locale::Fr).0.ends_with("est le 1er mars 2027."), "{:?}", said(&cool_off, Locale::Fr));
        assert!(said(&cool_off, Locale::Fr).0.contains("un délai de 30 jours"));
        assert!(said(&cool_off, Locale::Ko).0.contains("30일의 기간") && said(&cool_off, Locale::Ko).0.contains("2027년 3월 1일입니다"));
        let yearly = ApiError::from(DomainError::AssociationLimited { kind, next_allowed, met: LimitMet::PerYear { count: 3 } });
        let (english, limit) = said(&yearly, Locale::En);
        assert!(english.contains("only 3 associations are allowed each year") && english.ends_with("is March 1, 2027."), "{english}");
        assert_eq!(limit, "associations_per_year");
        assert!(said(&yearly, Locale::Fr).0.contains("seules 3 associations"));
        assert!(said(&yearly, Locale::Ko).0.contains("1년에 3번"));
        assert_eq!(Locale::Fr.date("2027-11-23T00:00:00Z".parse().unwrap()), "23 novembre 2027");
        assert_eq!(Locale::En.date("2027-12-31T23:59:59Z".parse().unwrap()), "December 31, 2027", "the day in UTC");
    }
}
