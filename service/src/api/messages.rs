//! Every reason a refusal can carry, with its gRPC code and the message for the person in
//! front of the portal, in English, French and Korean (Partner Center's own terms: "Espace
//! partenaires", "파트너 센터"). Keyed by reason: `status.rs` decides which reason an error
//! is, this file what it says; docs/design.md's reason table is checked against [`ALL`].
//! Messages say what was wrong and what to do, and never carry a token, a secret or another
//! person's data.

use tonic::Code;

/// A stable reason (`ErrorInfo.reason`), its code and its localized text.
#[derive(Debug, PartialEq, Eq)]
pub struct Reason {
    pub name: &'static str,
    pub code: Code,
    /// English, French, Korean.
    pub text: [&'static str; 3],
}

const fn reason(name: &'static str, code: Code, text: [&'static str; 3]) -> Reason {
    Reason { name, code, text }
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

pub const INVALID_ARGUMENT: Reason = reason("INVALID_ARGUMENT", Code::InvalidArgument, MALFORMED);

pub const STARTING: Reason = reason("STARTING", Code::Unavailable, TRY_AGAIN);

pub const SHUTTING_DOWN: Reason = reason(
    "SHUTTING_DOWN",
    Code::Unavailable,
    [
        "The service is restarting. Try again in a moment.",
        "Le service redémarre. Réessayez dans un instant.",
        "서비스를 다시 시작하는 중입니다. 잠시 후 다시 시도하세요.",
    ],
);

pub const REQUEST_IN_FLIGHT: Reason = reason(
    "REQUEST_IN_FLIGHT",
    Code::Unavailable,
    [
        "Your previous attempt is still being processed. Wait a moment, then try again.",
        "Votre tentative précédente est toujours en cours de traitement. Patientez un instant, puis réessayez.",
        "이전 시도를 아직 처리하고 있습니다. 잠시 기다린 후 다시 시도하세요.",
    ],
);

pub const INTERNAL: Reason = reason("INTERNAL", Code::Internal, TRY_AGAIN);

pub const TIMED_OUT: Reason = reason("TIMED_OUT", Code::DeadlineExceeded, TRY_AGAIN);

pub const REQUEST_IDS_EXHAUSTED: Reason = reason(
    "REQUEST_IDS_EXHAUSTED",
    Code::ResourceExhausted,
    [
        "Too many requests today. Try again tomorrow.",
        "Trop de demandes aujourd'hui. Réessayez demain.",
        "오늘 요청이 너무 많습니다. 내일 다시 시도하세요.",
    ],
);

pub const MISSING_TOKEN: Reason = reason("MISSING_TOKEN", Code::Unauthenticated, SIGN_IN_AGAIN);

pub const INVALID_TOKEN: Reason = reason("INVALID_TOKEN", Code::Unauthenticated, SIGN_IN_AGAIN);

pub const TOKEN_TOO_LARGE: Reason = reason(
    "TOKEN_TOO_LARGE",
    Code::Unauthenticated,
    [
        "Your sign-in token is too large to be accepted. Sign out of Partner Center, then sign in again.",
        "Votre jeton de connexion est trop volumineux pour être accepté. Déconnectez-vous de l'Espace partenaires, puis reconnectez-vous.",
        "로그인 토큰이 너무 커서 허용되지 않습니다. 파트너 센터에서 로그아웃한 후 다시 로그인하세요.",
    ],
);

pub const IDENTITY_PROVIDER_UNAVAILABLE: Reason = reason("IDENTITY_PROVIDER_UNAVAILABLE", Code::Unavailable, TRY_AGAIN);

pub const GUEST_CANNOT_OWN_LINKS: Reason = reason(
    "GUEST_CANNOT_OWN_LINKS",
    Code::PermissionDenied,
    [
        "Guest users can't sign in to Partner Center. Sign in with a work account of your own organization.",
        "Les utilisateurs invités ne peuvent pas se connecter à l'Espace partenaires. Connectez-vous avec un compte professionnel de votre propre organisation.",
        "게스트 사용자는 파트너 센터에 로그인할 수 없습니다. 본인 조직의 회사 계정으로 로그인하세요.",
    ],
);

pub const APP_NOT_ALLOWED: Reason = reason(
    "APP_NOT_ALLOWED",
    Code::PermissionDenied,
    [
        "This application is not one of the services allowed to call idlink. Ask idlink's operators to register it.",
        "Cette application ne fait pas partie des services autorisés à appeler idlink. Demandez aux opérateurs d'idlink de l'enregistrer.",
        "이 애플리케이션은 idlink를 호출할 수 있는 서비스가 아닙니다. idlink 운영자에게 등록을 요청하세요.",
    ],
);

pub const CLIENT_NOT_ALLOWED: Reason = reason(
    "CLIENT_NOT_ALLOWED",
    Code::PermissionDenied,
    [
        "This application may not manage your linked accounts. Open your profile in Partner Center instead.",
        "Cette application ne peut pas gérer vos comptes liés. Ouvrez plutôt votre profil dans l'Espace partenaires.",
        "이 애플리케이션은 연결된 계정을 관리할 수 없습니다. 대신 파트너 센터에서 프로필을 여세요.",
    ],
);

pub const PERSONAL_ACCOUNT_CANNOT_OWN_LINKS: Reason = reason(
    "PERSONAL_ACCOUNT_CANNOT_OWN_LINKS",
    Code::PermissionDenied,
    [
        "Personal email addresses aren't supported for Partner Center sign-in. Sign in with your work account.",
        "Les adresses e-mail personnelles ne sont pas prises en charge pour la connexion à l'Espace partenaires. Connectez-vous avec votre compte professionnel.",
        "개인 이메일 주소는 파트너 센터 로그인에 지원되지 않습니다. 회사 계정으로 로그인하세요.",
    ],
);

pub const INSUFFICIENT_SCOPE: Reason = reason(
    "INSUFFICIENT_SCOPE",
    Code::PermissionDenied,
    [
        "Your sign-in does not allow managing linked accounts. Sign in to Partner Center again.",
        "Votre connexion ne permet pas de gérer les comptes liés. Reconnectez-vous à l'Espace partenaires.",
        "현재 로그인으로는 연결된 계정을 관리할 수 없습니다. 파트너 센터에 다시 로그인하세요.",
    ],
);

pub const STORE_UNAVAILABLE: Reason = reason("STORE_UNAVAILABLE", Code::Unavailable, TRY_AGAIN);

pub const CURSOR_EXPIRED: Reason = reason(
    "CURSOR_EXPIRED",
    Code::FailedPrecondition,
    [
        "The change feed no longer holds events that old. Resynchronise, then watch from the current position.",
        "Le flux de modifications ne conserve plus d'événements aussi anciens. Resynchronisez, puis suivez depuis la position actuelle.",
        "변경 피드에 그렇게 오래된 이벤트가 더 이상 없습니다. 다시 동기화한 후 현재 위치부터 감시하세요.",
    ],
);

pub const KIND_NOT_CONFIGURED: Reason = reason(
    "KIND_NOT_CONFIGURED",
    Code::FailedPrecondition,
    [
        "This kind of account link is not available right now.",
        "Ce type de liaison de compte n'est pas disponible pour le moment.",
        "이 유형의 계정 연결은 현재 사용할 수 없습니다.",
    ],
);

pub const REDIRECT_URI_MISMATCH: Reason = reason("REDIRECT_URI_MISMATCH", Code::InvalidArgument, START_AGAIN);

pub const SIGN_IN_CANCELLED: Reason = reason(
    "SIGN_IN_CANCELLED",
    Code::FailedPrecondition,
    [
        "The sign-in with your personal Microsoft account was cancelled. Nothing was linked; start again when you're ready.",
        "La connexion avec votre compte Microsoft personnel a été annulée. Aucun compte n'a été lié ; recommencez quand vous serez prêt.",
        "개인 Microsoft 계정 로그인이 취소되었습니다. 연결된 항목은 없습니다. 준비되면 다시 시작하세요.",
    ],
);

pub const RATE_LIMITED: Reason = reason(
    "RATE_LIMITED",
    Code::ResourceExhausted,
    [
        "Too many sign-in attempts. Wait a minute, then try again.",
        "Trop de tentatives de connexion. Patientez une minute, puis réessayez.",
        "로그인 시도가 너무 많습니다. 1분 후에 다시 시도하세요.",
    ],
);

pub const WATCH_STREAMS_EXHAUSTED: Reason = reason(
    "WATCH_STREAMS_EXHAUSTED",
    Code::ResourceExhausted,
    [
        "Too many change-feed streams are open for this caller. Close one, then try again.",
        "Trop de flux de modifications sont ouverts pour cet appelant. Fermez-en un, puis réessayez.",
        "이 호출자에 대해 열린 변경 피드 스트림이 너무 많습니다. 하나를 닫은 후 다시 시도하세요.",
    ],
);

pub const RECALCULATION_RUNNING: Reason = reason(
    "RECALCULATION_RUNNING",
    Code::ResourceExhausted,
    [
        "A full credit recalculation is already running. Wait for it to finish, then try again.",
        "Un recalcul complet des crédits est déjà en cours. Attendez qu'il se termine, puis réessayez.",
        "전체 크레딧 재계산이 이미 실행 중입니다. 완료될 때까지 기다린 후 다시 시도하세요.",
    ],
);

pub const SIGN_IN_FAILED: Reason = reason("SIGN_IN_FAILED", Code::FailedPrecondition, SIGN_IN_NOT_VERIFIED);

pub const REDIRECT_URI_NOT_ALLOWED: Reason = reason(
    "REDIRECT_URI_NOT_ALLOWED",
    Code::InvalidArgument,
    [
        "This page is not allowed to link accounts. Open the link from your Partner Center profile.",
        "Cette page n'est pas autorisée à lier des comptes. Ouvrez le lien depuis votre profil de l'Espace partenaires.",
        "이 페이지에서는 계정을 연결할 수 없습니다. 파트너 센터 프로필에서 링크를 여세요.",
    ],
);

pub const ISSUER_MISMATCH: Reason = reason("ISSUER_MISMATCH", Code::PermissionDenied, SIGN_IN_NOT_VERIFIED);

pub const CODE_REJECTED: Reason = reason("CODE_REJECTED", Code::FailedPrecondition, START_AGAIN);

pub const ID_TOKEN_INVALID: Reason = reason("ID_TOKEN_INVALID", Code::PermissionDenied, SIGN_IN_NOT_VERIFIED);

pub const NONCE_MISMATCH: Reason = reason("NONCE_MISMATCH", Code::PermissionDenied, SIGN_IN_NOT_VERIFIED);

pub const NOT_A_PERSONAL_ACCOUNT: Reason = reason(
    "NOT_A_PERSONAL_ACCOUNT",
    Code::FailedPrecondition,
    [
        "That is a work or school account. Sign in with a personal Microsoft account (such as Outlook.com or Hotmail) instead.",
        "Il s'agit d'un compte professionnel ou scolaire. Connectez-vous plutôt avec un compte Microsoft personnel (Outlook.com ou Hotmail, par exemple).",
        "회사 또는 학교 계정입니다. 대신 개인 Microsoft 계정(예: Outlook.com 또는 Hotmail)으로 로그인하세요.",
    ],
);

pub const ALREADY_LINKED: Reason = reason(
    "ALREADY_LINKED",
    Code::AlreadyExists,
    [
        "You already have a personal account linked for this. Remove access first, or choose to replace it.",
        "Vous avez déjà un compte personnel lié pour cela. Supprimez d'abord l'accès ou choisissez de le remplacer.",
        "이미 연결된 개인 계정이 있습니다. 먼저 액세스를 제거하거나 교체를 선택하세요.",
    ],
);

pub const ACCOUNT_LINKED_ELSEWHERE: Reason = reason(
    "ACCOUNT_LINKED_ELSEWHERE",
    Code::AlreadyExists,
    [
        "This Microsoft account is already connected to another Partner Center account. Sign in with a different personal account, or, if you moved to a new organization, start again and choose to transfer it.",
        "Ce compte Microsoft est déjà connecté à un autre compte de l'Espace partenaires. Connectez-vous avec un autre compte personnel ou, si vous avez changé d'organisation, recommencez et choisissez de le transférer.",
        "이 Microsoft 계정은 이미 다른 파트너 센터 계정에 연결되어 있습니다. 다른 개인 계정으로 로그인하거나, 새 조직으로 옮긴 경우 다시 시작하여 이전을 선택하세요.",
    ],
);

pub const LINK_NOT_FOUND: Reason = reason(
    "LINK_NOT_FOUND",
    Code::NotFound,
    ["There is no linked account to remove.", "Il n'y a aucun compte lié à supprimer.", "제거할 연결된 계정이 없습니다."],
);

pub const FLOW_NOT_FOUND: Reason = reason("FLOW_NOT_FOUND", Code::NotFound, START_AGAIN);

pub const FLOW_EXPIRED: Reason = reason(
    "FLOW_EXPIRED",
    Code::FailedPrecondition,
    [
        "The sign-in took too long and expired. Start again from your profile page.",
        "La connexion a pris trop de temps et a expiré. Recommencez depuis votre page de profil.",
        "로그인 시간이 너무 오래 걸려 만료되었습니다. 프로필 페이지에서 다시 시작하세요.",
    ],
);

pub const FLOW_OWNED_BY_ANOTHER_USER: Reason = reason("FLOW_OWNED_BY_ANOTHER_USER", Code::PermissionDenied, START_AGAIN);

pub const NOT_PERMITTED: Reason = reason(
    "NOT_PERMITTED",
    Code::PermissionDenied,
    [
        "You don't have permission to do this. Unless you administer your organization, you can see and change only your own linked accounts.",
        "Vous n'avez pas l'autorisation de faire cela. Sauf si vous administrez votre organisation, vous ne pouvez voir et modifier que vos propres comptes liés.",
        "이 작업을 수행할 권한이 없습니다. 조직 관리자가 아니면 본인의 연결된 계정만 보고 변경할 수 있습니다.",
    ],
);

pub const CALLER_NOT_A_USER: Reason = reason(
    "CALLER_NOT_A_USER",
    Code::PermissionDenied,
    [
        "Only a signed-in Partner Center user can manage linked accounts.",
        "Seul un utilisateur connecté à l'Espace partenaires peut gérer les comptes liés.",
        "로그인한 파트너 센터 사용자만 연결된 계정을 관리할 수 있습니다.",
    ],
);

pub const ETAG_MISMATCH: Reason = reason(
    "ETAG_MISMATCH",
    Code::FailedPrecondition,
    [
        "This linked account changed since you loaded the page. Refresh and try again.",
        "Ce compte lié a changé depuis le chargement de la page. Actualisez et réessayez.",
        "페이지를 불러온 후 이 연결된 계정이 변경되었습니다. 새로 고친 후 다시 시도하세요.",
    ],
);

pub const PERSONAL_ACCOUNT_NOT_LINKED: Reason = reason(
    "PERSONAL_ACCOUNT_NOT_LINKED",
    Code::NotFound,
    [
        "This personal account is not linked to any Partner Center account.",
        "Ce compte personnel n'est lié à aucun compte de l'Espace partenaires.",
        "이 개인 계정은 어떤 파트너 센터 계정에도 연결되어 있지 않습니다.",
    ],
);

pub const UNKNOWN_CERTIFICATION: Reason = reason(
    "UNKNOWN_CERTIFICATION",
    Code::InvalidArgument,
    [
        "This certification is not one that counts for an organization.",
        "Cette certification ne fait pas partie de celles qui comptent pour une organisation.",
        "이 인증은 조직에 반영되는 인증이 아닙니다.",
    ],
);

pub const SOURCE_NOT_RECOGNISED: Reason = reason(
    "SOURCE_NOT_RECOGNISED",
    Code::InvalidArgument,
    [
        "Skills are counted only from Microsoft Learning and Partner University.",
        "Les compétences ne sont comptabilisées qu'à partir de Microsoft Learning et de Partner University.",
        "기술은 Microsoft Learning 및 Partner University에서만 계산됩니다.",
    ],
);

pub const ORGANIZATION_NOT_FOUND: Reason = reason(
    "ORGANIZATION_NOT_FOUND",
    Code::NotFound,
    [
        "No organization is enrolled with this PartnerID.",
        "Aucune organisation n'est inscrite avec ce PartnerID.",
        "이 PartnerID로 등록된 조직이 없습니다.",
    ],
);

pub const ORGANIZATION_FULL: Reason = reason(
    "ORGANIZATION_FULL",
    Code::FailedPrecondition,
    [
        "This organization already has as many Microsoft Entra tenants as it can hold. Move a tenant out of it first.",
        "Cette organisation compte déjà autant de locataires Microsoft Entra qu'elle peut en contenir. Retirez-en d'abord un locataire.",
        "이 조직에는 이미 보유할 수 있는 최대 수의 Microsoft Entra 테넌트가 있습니다. 먼저 테넌트 하나를 다른 곳으로 옮기세요.",
    ],
);

/// Said when the cool-off since the last association has not passed; `{days}` and `{date}`
/// are filled in (`status.rs`).
pub const ASSOCIATION_LIMITED: Reason = reason(
    "ASSOCIATION_LIMITED",
    Code::FailedPrecondition,
    [
        "You've attempted to associate with a partner organization. However, we require a period of {days} days between associations. Your next available date for a subsequent association is {date}.",
        "Vous avez tenté de vous associer à une organisation partenaire. Toutefois, un délai de {days} jours est requis entre deux associations. Votre prochaine date disponible pour une nouvelle association est le {date}.",
        "파트너 조직과의 연결을 시도했습니다. 그러나 연결 사이에는 {days}일의 기간이 필요합니다. 다음 연결이 가능한 날짜는 {date}입니다.",
    ],
);

/// [`ASSOCIATION_LIMITED`]'s text when the associations of the year are used up; `{count}`
/// and `{date}` are filled in.
pub const ASSOCIATIONS_PER_YEAR_USED: [&str; 3] = [
    "You've attempted to associate with a partner organization. However, only {count} associations are allowed each year. Your next available date for a subsequent association is {date}.",
    "Vous avez tenté de vous associer à une organisation partenaire. Toutefois, seules {count} associations sont autorisées par an. Votre prochaine date disponible pour une nouvelle association est le {date}.",
    "파트너 조직과의 연결을 시도했습니다. 그러나 연결은 1년에 {count}번만 허용됩니다. 다음 연결이 가능한 날짜는 {date}입니다.",
];

/// Every reason, once.
pub const ALL: &[&Reason] = &[
    &ASSOCIATION_LIMITED,
    &UNKNOWN_CERTIFICATION,
    &SOURCE_NOT_RECOGNISED,
    &ORGANIZATION_NOT_FOUND,
    &ORGANIZATION_FULL,
    &INVALID_ARGUMENT,
    &STARTING,
    &SHUTTING_DOWN,
    &TIMED_OUT,
    &REQUEST_IN_FLIGHT,
    &INTERNAL,
    &REQUEST_IDS_EXHAUSTED,
    &MISSING_TOKEN,
    &INVALID_TOKEN,
    &TOKEN_TOO_LARGE,
    &IDENTITY_PROVIDER_UNAVAILABLE,
    &GUEST_CANNOT_OWN_LINKS,
    &APP_NOT_ALLOWED,
    &CLIENT_NOT_ALLOWED,
    &PERSONAL_ACCOUNT_CANNOT_OWN_LINKS,
    &INSUFFICIENT_SCOPE,
    &STORE_UNAVAILABLE,
    &CURSOR_EXPIRED,
    &KIND_NOT_CONFIGURED,
    &REDIRECT_URI_MISMATCH,
    &SIGN_IN_CANCELLED,
    &RATE_LIMITED,
    &WATCH_STREAMS_EXHAUSTED,
    &RECALCULATION_RUNNING,
    &SIGN_IN_FAILED,
    &REDIRECT_URI_NOT_ALLOWED,
    &ISSUER_MISMATCH,
    &CODE_REJECTED,
    &ID_TOKEN_INVALID,
    &NONCE_MISMATCH,
    &NOT_A_PERSONAL_ACCOUNT,
    &ALREADY_LINKED,
    &ACCOUNT_LINKED_ELSEWHERE,
    &LINK_NOT_FOUND,
    &FLOW_NOT_FOUND,
    &FLOW_EXPIRED,
    &FLOW_OWNED_BY_ANOTHER_USER,
    &NOT_PERMITTED,
    &CALLER_NOT_A_USER,
    &ETAG_MISMATCH,
    &PERSONAL_ACCOUNT_NOT_LINKED,
];
