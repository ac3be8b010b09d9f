//! The only place a `tonic::Status` is built. Every refusal gets the right code, a stable
//! machine-readable reason (`ErrorInfo`) and a `LocalizedMessage` for the person in front of
//! the portal, in the caller's `accept-language` (English, French, Korean). Messages say
//! what was wrong and what to do, and never carry a token, a secret or another person's data.

use std::collections::HashMap;

use tonic::{Code, Status, metadata::MetadataMap};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{domain::DomainError, linking::LinkingError, oidc::AuthError, oidc::OidcError, store::StoreError};

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
    #[error("idlinkd is shutting down")]
    ShuttingDown,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locale {
    En,
    Fr,
    Ko,
}

impl Locale {
    /// The first supported language of an `accept-language` value, by preference order.
    pub fn from_accept_language(value: Option<&str>) -> Self {
        let mut ranked: Vec<(f32, &str)> = value
            .unwrap_or_default()
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.trim().split(';');
                let tag = pieces.next()?.trim();
                let q = pieces.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse().ok()).unwrap_or(1.0);
                Some((q, tag))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, tag) in ranked {
            match tag.split('-').next().unwrap_or_default().to_ascii_lowercase().as_str() {
                "en" => return Locale::En,
                "fr" => return Locale::Fr,
                "ko" => return Locale::Ko,
                _ => {}
            }
        }
        Locale::En
    }

    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        Self::from_accept_language(metadata.get("accept-language").and_then(|v| v.to_str().ok()))
    }

    fn tag(self) -> &'static str {
        match self {
            Locale::En => "en-US",
            Locale::Fr => "fr-FR",
            Locale::Ko => "ko-KR",
        }
    }
}

struct Refusal {
    code: Code,
    reason: &'static str,
    /// English, French, Korean.
    text: [&'static str; 3],
}

const fn refusal(code: Code, reason: &'static str, text: [&'static str; 3]) -> Refusal {
    Refusal { code, reason, text }
}

const MALFORMED: [&str; 3] = [
    "The request is incomplete or malformed. Refresh the page and try again.",
    "La demande est incomplète ou mal formée. Actualisez la page et réessayez.",
    "요청이 불완전하거나 형식이 잘못되었습니다. 페이지를 새로 고친 후 다시 시도하세요.",
];
const TRY_AGAIN: [&str; 3] = [
    "The service is temporarily unavailable. Please try again in a few minutes.",
    "Le service est temporairement indisponible. Réessayez dans quelques minutes.",
    "서비스를 일시적으로 사용할 수 없습니다. 몇 분 후에 다시 시도하세요.",
];
const START_AGAIN: [&str; 3] = [
    "This sign-in link is no longer valid. Start again from your profile page.",
    "Ce lien de connexion n'est plus valide. Recommencez depuis votre page de profil.",
    "이 로그인 링크는 더 이상 유효하지 않습니다. 프로필 페이지에서 다시 시작하세요.",
];
const SIGN_IN_AGAIN: [&str; 3] = [
    "Your session is not valid. Sign in to Partner Center again.",
    "Votre session n'est pas valide. Reconnectez-vous à l'Espace partenaires.",
    "세션이 유효하지 않습니다. 파트너 센터에 다시 로그인하세요.",
];
const SIGN_IN_NOT_VERIFIED: [&str; 3] = [
    "We could not verify the sign-in with your personal Microsoft account. Start again from your profile page.",
    "Nous n'avons pas pu vérifier la connexion avec votre compte Microsoft personnel. Recommencez depuis votre page de profil.",
    "개인 Microsoft 계정 로그인을 확인할 수 없습니다. 프로필 페이지에서 다시 시작하세요.",
];

fn describe(err: &ApiError) -> Refusal {
    use Code::*;
    match err {
        ApiError::InvalidArgument { .. } => refusal(InvalidArgument, "INVALID_ARGUMENT", MALFORMED),
        ApiError::Starting => refusal(Unavailable, "STARTING", TRY_AGAIN),
        ApiError::ShuttingDown => refusal(
            Unavailable,
            "SHUTTING_DOWN",
            [
                "The service is restarting. Try again in a moment.",
                "Le service redémarre. Réessayez dans un instant.",
                "서비스를 다시 시작하는 중입니다. 잠시 후 다시 시도하세요.",
            ],
        ),
        ApiError::RequestInFlight => refusal(
            Unavailable,
            "REQUEST_IN_FLIGHT",
            [
                "Your previous attempt is still being processed. Wait a moment, then try again.",
                "Votre tentative précédente est toujours en cours de traitement. Patientez un instant, puis réessayez.",
                "이전 시도를 아직 처리하고 있습니다. 잠시 기다린 후 다시 시도하세요.",
            ],
        ),
        ApiError::StoredAnswerUnreadable => refusal(Internal, "INTERNAL", TRY_AGAIN),
        ApiError::RequestIdsExhausted { .. } => refusal(
            ResourceExhausted,
            "REQUEST_IDS_EXHAUSTED",
            [
                "Too many requests today. Try again tomorrow.",
                "Trop de demandes aujourd'hui. Réessayez demain.",
                "오늘 요청이 너무 많습니다. 내일 다시 시도하세요.",
            ],
        ),
        ApiError::Auth(e) => match e {
            AuthError::MissingToken => refusal(Unauthenticated, "MISSING_TOKEN", SIGN_IN_AGAIN),
            AuthError::InvalidToken { .. } => refusal(Unauthenticated, "INVALID_TOKEN", SIGN_IN_AGAIN),
            AuthError::TokenTooLarge => refusal(
                Unauthenticated,
                "TOKEN_TOO_LARGE",
                [
                    "Your sign-in token is too large to be accepted. Sign out of Partner Center, then sign in again.",
                    "Votre jeton de connexion est trop volumineux pour être accepté. Déconnectez-vous de l'Espace partenaires, puis reconnectez-vous.",
                    "로그인 토큰이 너무 커서 허용되지 않습니다. 파트너 센터에서 로그아웃한 후 다시 로그인하세요.",
                ],
            ),
            AuthError::ProviderUnavailable => refusal(Unavailable, "IDENTITY_PROVIDER_UNAVAILABLE", TRY_AGAIN),
            AuthError::Guest => refusal(
                PermissionDenied,
                "GUEST_CANNOT_OWN_LINKS",
                [
                    "Guest users can't sign in to Partner Center. Sign in with a work account of your own organization.",
                    "Les utilisateurs invités ne peuvent pas se connecter à l'Espace partenaires. Connectez-vous avec un compte professionnel de votre propre organisation.",
                    "게스트 사용자는 파트너 센터에 로그인할 수 없습니다. 본인 조직의 회사 계정으로 로그인하세요.",
                ],
            ),
            AuthError::AppNotAllowed { .. } => refusal(
                PermissionDenied,
                "APP_NOT_ALLOWED",
                [
                    "This application is not one of the services allowed to call idlink. Ask idlink's operators to register it.",
                    "Cette application ne fait pas partie des services autorisés à appeler idlink. Demandez aux opérateurs d'idlink de l'enregistrer.",
                    "이 애플리케이션은 idlink를 호출할 수 있는 서비스가 아닙니다. idlink 운영자에게 등록을 요청하세요.",
                ],
            ),
            AuthError::ClientNotAllowed { .. } => refusal(
                PermissionDenied,
                "CLIENT_NOT_ALLOWED",
                [
                    "This application may not manage your linked accounts. Open your profile in Partner Center instead.",
                    "Cette application ne peut pas gérer vos comptes liés. Ouvrez plutôt votre profil dans l'Espace partenaires.",
                    "이 애플리케이션은 연결된 계정을 관리할 수 없습니다. 대신 파트너 센터에서 프로필을 여세요.",
                ],
            ),
            AuthError::PersonalAccountGuest => refusal(
                PermissionDenied,
                "PERSONAL_ACCOUNT_CANNOT_OWN_LINKS",
                [
                    "Personal email addresses aren't supported for Partner Center sign-in. Sign in with your work account.",
                    "Les adresses e-mail personnelles ne sont pas prises en charge pour la connexion à l'Espace partenaires. Connectez-vous avec votre compte professionnel.",
                    "개인 이메일 주소는 파트너 센터 로그인에 지원되지 않습니다. 회사 계정으로 로그인하세요.",
                ],
            ),
            AuthError::MissingScope => refusal(
                PermissionDenied,
                "INSUFFICIENT_SCOPE",
                [
                    "Your sign-in does not allow managing linked accounts. Sign in to Partner Center again.",
                    "Votre connexion ne permet pas de gérer les comptes liés. Reconnectez-vous à l'Espace partenaires.",
                    "현재 로그인으로는 연결된 계정을 관리할 수 없습니다. 파트너 센터에 다시 로그인하세요.",
                ],
            ),
        },
        ApiError::Linking(e) => describe_linking(e),
    }
}

fn describe_linking(err: &LinkingError) -> Refusal {
    use Code::*;
    match err {
        LinkingError::Domain(d) | LinkingError::Store(StoreError::Domain(d)) => describe_domain(d),
        LinkingError::Store(StoreError::Unavailable { .. }) => refusal(Unavailable, "STORE_UNAVAILABLE", TRY_AGAIN),
        LinkingError::Store(StoreError::Corrupt { .. }) => refusal(Internal, "INTERNAL", TRY_AGAIN),
        LinkingError::Store(StoreError::CursorExpired { .. }) => refusal(
            FailedPrecondition,
            "CURSOR_EXPIRED",
            [
                "The change feed no longer holds events that old. Resynchronise, then watch from the current position.",
                "Le flux de modifications ne conserve plus d'événements aussi anciens. Resynchronisez, puis suivez depuis la position actuelle.",
                "변경 피드에 그렇게 오래된 이벤트가 더 이상 없습니다. 다시 동기화한 후 현재 위치부터 감시하세요.",
            ],
        ),
        LinkingError::KindNotConfigured { .. } => refusal(
            FailedPrecondition,
            "KIND_NOT_CONFIGURED",
            [
                "This kind of account link is not available right now.",
                "Ce type de liaison de compte n'est pas disponible pour le moment.",
                "이 유형의 계정 연결은 현재 사용할 수 없습니다.",
            ],
        ),
        LinkingError::RedirectUriMismatch => refusal(InvalidArgument, "REDIRECT_URI_MISMATCH", START_AGAIN),
        LinkingError::SignInFailed { cancelled: true } => refusal(
            FailedPrecondition,
            "SIGN_IN_CANCELLED",
            [
                "The sign-in with your personal Microsoft account was cancelled. Nothing was linked; start again when you're ready.",
                "La connexion avec votre compte Microsoft personnel a été annulée. Aucun compte n'a été lié ; recommencez quand vous serez prêt.",
                "개인 Microsoft 계정 로그인이 취소되었습니다. 연결된 항목은 없습니다. 준비되면 다시 시작하세요.",
            ],
        ),
        LinkingError::RateLimited { .. } => refusal(
            ResourceExhausted,
            "RATE_LIMITED",
            [
                "Too many sign-in attempts. Wait a minute, then try again.",
                "Trop de tentatives de connexion. Patientez une minute, puis réessayez.",
                "로그인 시도가 너무 많습니다. 1분 후에 다시 시도하세요.",
            ],
        ),
        LinkingError::TooManyWatchers { .. } => refusal(
            ResourceExhausted,
            "WATCH_STREAMS_EXHAUSTED",
            [
                "Too many change-feed streams are open for this caller. Close one, then try again.",
                "Trop de flux de modifications sont ouverts pour cet appelant. Fermez-en un, puis réessayez.",
                "이 호출자에 대해 열린 변경 피드 스트림이 너무 많습니다. 하나를 닫은 후 다시 시도하세요.",
            ],
        ),
        LinkingError::RecalculationRunning => refusal(
            ResourceExhausted,
            "RECALCULATION_RUNNING",
            [
                "A full credit recalculation is already running. Wait for it to finish, then try again.",
                "Un recalcul complet des crédits est déjà en cours. Attendez qu'il se termine, puis réessayez.",
                "전체 크레딧 재계산이 이미 실행 중입니다. 완료될 때까지 기다린 후 다시 시도하세요.",
            ],
        ),
        LinkingError::SignInFailed { cancelled: false } => refusal(FailedPrecondition, "SIGN_IN_FAILED", SIGN_IN_NOT_VERIFIED),
        LinkingError::Oidc(o) => describe_oidc(o),
    }
}

fn describe_oidc(err: &OidcError) -> Refusal {
    use Code::*;
    match err {
        OidcError::Config { .. } => refusal(Internal, "INTERNAL", TRY_AGAIN),
        OidcError::Provider { .. } => refusal(Unavailable, "IDENTITY_PROVIDER_UNAVAILABLE", TRY_AGAIN),
        OidcError::RedirectUriNotAllowed => refusal(
            InvalidArgument,
            "REDIRECT_URI_NOT_ALLOWED",
            [
                "This page is not allowed to link accounts. Open the link from your Partner Center profile.",
                "Cette page n'est pas autorisée à lier des comptes. Ouvrez le lien depuis votre profil de l'Espace partenaires.",
                "이 페이지에서는 계정을 연결할 수 없습니다. 파트너 센터 프로필에서 링크를 여세요.",
            ],
        ),
        OidcError::IssuerMismatch => refusal(PermissionDenied, "ISSUER_MISMATCH", SIGN_IN_NOT_VERIFIED),
        OidcError::CodeRejected => refusal(FailedPrecondition, "CODE_REJECTED", START_AGAIN),
        OidcError::UnknownSigningKey | OidcError::IdTokenInvalid { .. } => {
            refusal(PermissionDenied, "ID_TOKEN_INVALID", SIGN_IN_NOT_VERIFIED)
        }
        OidcError::NonceMismatch => refusal(PermissionDenied, "NONCE_MISMATCH", SIGN_IN_NOT_VERIFIED),
        OidcError::NotAPersonalAccount => refusal(
            FailedPrecondition,
            "NOT_A_PERSONAL_ACCOUNT",
            [
                "That is a work or school account. Sign in with a personal Microsoft account (such as Outlook.com or Hotmail) instead.",
                "Il s'agit d'un compte professionnel ou scolaire. Connectez-vous plutôt avec un compte Microsoft personnel (Outlook.com ou Hotmail, par exemple).",
                "회사 또는 학교 계정입니다. 대신 개인 Microsoft 계정(예: Outlook.com 또는 Hotmail)으로 로그인하세요.",
            ],
        ),
    }
}

fn describe_domain(err: &DomainError) -> Refusal {
    use Code::*;
    match err {
        DomainError::InvalidField { .. } => refusal(InvalidArgument, "INVALID_ARGUMENT", MALFORMED),
        DomainError::AlreadyLinked { .. } => refusal(
            AlreadyExists,
            "ALREADY_LINKED",
            [
                "You already have a personal account linked for this. Remove access first, or choose to replace it.",
                "Vous avez déjà un compte personnel lié pour cela. Supprimez d'abord l'accès ou choisissez de le remplacer.",
                "이미 연결된 개인 계정이 있습니다. 먼저 액세스를 제거하거나 교체를 선택하세요.",
            ],
        ),
        DomainError::LinkedElsewhere { .. } => refusal(
            AlreadyExists,
            "ACCOUNT_LINKED_ELSEWHERE",
            [
                "This Microsoft account is already connected to another Partner Center account. Sign in with a different personal account, or, if you moved to a new organization, start again and choose to transfer it.",
                "Ce compte Microsoft est déjà connecté à un autre compte de l'Espace partenaires. Connectez-vous avec un autre compte personnel ou, si vous avez changé d'organisation, recommencez et choisissez de le transférer.",
                "이 Microsoft 계정은 이미 다른 파트너 센터 계정에 연결되어 있습니다. 다른 개인 계정으로 로그인하거나, 새 조직으로 옮긴 경우 다시 시작하여 이전을 선택하세요.",
            ],
        ),
        DomainError::LinkNotFound { .. } => refusal(
            NotFound,
            "LINK_NOT_FOUND",
            ["There is no linked account to remove.", "Il n'y a aucun compte lié à supprimer.", "제거할 연결된 계정이 없습니다."],
        ),
        DomainError::NotAPersonalAccount => describe_oidc(&OidcError::NotAPersonalAccount),
        DomainError::NotAWorkAccount { .. } => describe(&ApiError::Auth(AuthError::PersonalAccountGuest)),
        DomainError::FlowNotFound => refusal(NotFound, "FLOW_NOT_FOUND", START_AGAIN),
        DomainError::FlowExpired => refusal(
            FailedPrecondition,
            "FLOW_EXPIRED",
            [
                "The sign-in took too long and expired. Start again from your profile page.",
                "La connexion a pris trop de temps et a expiré. Recommencez depuis votre page de profil.",
                "로그인 시간이 너무 오래 걸려 만료되었습니다. 프로필 페이지에서 다시 시작하세요.",
            ],
        ),
        DomainError::FlowOwnedByAnotherUser => refusal(PermissionDenied, "FLOW_OWNED_BY_ANOTHER_USER", START_AGAIN),
        DomainError::NotPermitted => refusal(
            PermissionDenied,
            "NOT_PERMITTED",
            [
                "You don't have permission to do this. Unless you administer your organization, you can see and change only your own linked accounts.",
                "Vous n'avez pas l'autorisation de faire cela. Sauf si vous administrez votre organisation, vous ne pouvez voir et modifier que vos propres comptes liés.",
                "이 작업을 수행할 권한이 없습니다. 조직 관리자가 아니면 본인의 연결된 계정만 보고 변경할 수 있습니다.",
            ],
        ),
        DomainError::CallerNotAUser => refusal(
            PermissionDenied,
            "CALLER_NOT_A_USER",
            [
                "Only a signed-in Partner Center user can manage linked accounts.",
                "Seul un utilisateur connecté à l'Espace partenaires peut gérer les comptes liés.",
                "로그인한 파트너 센터 사용자만 연결된 계정을 관리할 수 있습니다.",
            ],
        ),
        DomainError::EtagMismatch => refusal(
            FailedPrecondition,
            "ETAG_MISMATCH",
            [
                "This linked account changed since you loaded the page. Refresh and try again.",
                "Ce compte lié a changé depuis le chargement de la page. Actualisez et réessayez.",
                "페이지를 불러온 후 이 연결된 계정이 변경되었습니다. 새로 고친 후 다시 시도하세요.",
            ],
        ),
        DomainError::PersonalAccountNotLinked => refusal(
            NotFound,
            "PERSONAL_ACCOUNT_NOT_LINKED",
            [
                "This personal account is not linked to any Partner Center account.",
                "Ce compte personnel n'est lié à aucun compte de l'Espace partenaires.",
                "이 개인 계정은 어떤 파트너 센터 계정에도 연결되어 있지 않습니다.",
            ],
        ),
    }
}

/// A remembered answer given again (idempotent retries): exactly the Status first answered.
pub fn replayed(code: i32, message: String, details: Vec<u8>) -> Status {
    Status::with_details(Code::from(code), message, details.into())
}

/// The stable reason a refusal carries (audit lines name it beside the detail).
pub fn reason(err: &ApiError) -> &'static str {
    describe(err).reason
}

/// Builds the Status. Internal detail (store or provider errors) goes to the log, not the caller.
pub fn to_status(err: &ApiError, locale: Locale) -> Status {
    let refusal = describe(err);
    if matches!(refusal.code, Code::Internal | Code::Unavailable) {
        tracing::warn!(reason = refusal.reason, error = %err, "request failed");
    } else {
        tracing::debug!(reason = refusal.reason, error = %err, "request refused");
    }
    let mut metadata = HashMap::new();
    if let ApiError::InvalidArgument { field, .. } = err {
        metadata.insert("field".to_owned(), (*field).to_owned());
    }
    let text = refusal.text[match locale {
        Locale::En => 0,
        Locale::Fr => 1,
        Locale::Ko => 2,
    }];
    let mut details = ErrorDetails::with_error_info(refusal.reason, ERROR_DOMAIN, metadata);
    details.set_localized_message(locale.tag(), text);
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
        _ => refusal.text[0].to_owned(),
    };
    Status::with_error_details(refusal.code, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason catalogue in docs/design.md lists exactly the reasons this file gives, each
    /// with the code it is given with.
    #[test]
    fn the_documented_reasons_are_the_reasons_given() {
        let source = include_str!("status.rs");
        let given: std::collections::BTreeSet<(String, String)> = source
            .match_indices("refusal(")
            .filter_map(|(at, _)| {
                let args = source[at + "refusal(".len()..].trim_start();
                let (code, rest) = args.split_once(',')?;
                let reason = rest.trim_start().strip_prefix('"')?.split('"').next()?;
                let code = code.trim();
                code.chars().all(|c| c.is_ascii_alphabetic()).then(|| (reason.to_owned(), code.to_owned()))
            })
            .filter(|(_, code)| code != "code")
            .collect();
        let screaming = |code: &str| {
            code.chars().fold(String::new(), |mut out, c| {
                if c.is_ascii_uppercase() && !out.is_empty() {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
                out
            })
        };
        let given: std::collections::BTreeSet<(String, String)> = given.into_iter().map(|(r, c)| (r, screaming(&c))).collect();
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
        assert_eq!(given, documented, "docs/design.md's Errors table and status.rs disagree");
    }

    #[test]
    fn accept_language_picks_the_preferred_supported_locale() {
        assert_eq!(Locale::from_accept_language(Some("fr-CA,fr;q=0.9,en;q=0.8")), Locale::Fr);
        assert_eq!(Locale::from_accept_language(Some("de-DE, ko;q=0.5, en;q=0.4")), Locale::Ko);
        assert_eq!(Locale::from_accept_language(Some("en;q=0.1, fr;q=0.9")), Locale::Fr);
        assert_eq!(Locale::from_accept_language(Some("de")), Locale::En);
        assert_eq!(Locale::from_accept_language(None), Locale::En);
    }
}
