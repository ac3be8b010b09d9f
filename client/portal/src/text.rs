//! The panel's words in English (the association guide's, word for word), French and Korean
//! (with Partner Center's own terms: "Espace partenaires", "파트너 센터"). Refusals are not
//! here: idlinkd sends their text in the caller's language, and the page shows it as sent.

use idlink_client::pb;
pub use idlink_proto::locale::Locale;

/// The page's words in `locale`, handed to the template as `t`: built once per language.
pub(crate) fn words(locale: Locale) -> &'static serde_json::Value {
    static WORDS: std::sync::OnceLock<[serde_json::Value; 3]> = std::sync::OnceLock::new();
    &WORDS.get_or_init(|| [Locale::En, Locale::Fr, Locale::Ko].map(table))[locale.index()]
}

/// One of the page's words.
pub(crate) fn word(locale: Locale, key: &str) -> &'static str {
    words(locale)[key].as_str().unwrap_or_default()
}

fn table(locale: Locale) -> serde_json::Value {
    let pick = |texts: [&str; 3]| texts[locale.index()].to_owned();
    serde_json::json!({
        "your_learning": pick(["Your learning", "Votre apprentissage", "내 학습"]),
        "pu_heading": pick(["Microsoft training & assessments", "Formations et évaluations Microsoft", "Microsoft 교육 및 평가"]),
        "pu_text": pick([
            "Connect a Microsoft Account to access Microsoft training and assessments through Partner University.",
            "Connectez un compte Microsoft pour accéder aux formations et évaluations Microsoft via Partner University.",
            "Partner University를 통해 Microsoft 교육 및 평가에 액세스하려면 Microsoft 계정을 연결하세요.",
        ]),
        "pu_button": pick(["Get Partner University access", "Obtenir l'accès à Partner University", "Partner University 액세스 권한 받기"]),
        "ml_heading": pick(["Microsoft exams and certifications", "Examens et certifications Microsoft", "Microsoft 시험 및 인증"]),
        "ml_text": pick([
            "Associate a Microsoft account that you have used to complete exams and certifications through Microsoft Learning so that we can give credit to your organization.",
            "Associez un compte Microsoft que vous avez utilisé pour passer des examens et obtenir des certifications via Microsoft Learning afin que nous puissions en attribuer le crédit à votre organisation.",
            "Microsoft Learning을 통해 시험 및 인증을 완료할 때 사용한 Microsoft 계정을 연결하면 조직에 크레딧을 제공할 수 있습니다.",
        ]),
        "ml_button": pick(["Associate Microsoft Learning account", "Associer un compte Microsoft Learning", "Microsoft Learning 계정 연결"]),
        "personal_hint": pick([
            "Use your personal Microsoft account to sign in here.",
            "Utilisez votre compte Microsoft personnel pour vous connecter ici.",
            "여기에서는 개인 Microsoft 계정으로 로그인하세요.",
        ]),
        "shortcut": pick([
            "Use {account} to associate my Microsoft Learning account",
            "Utiliser {account} pour associer mon compte Microsoft Learning",
            "{account}(으)로 내 Microsoft Learning 계정 연결",
        ]),
        // French sets a space before a colon.
        "colon": pick([": ", " : ", ": "]),
        "linked_account": pick(["Linked account", "Compte lié", "연결된 계정"]),
        "view_training": pick(["view training", "voir la formation", "교육 보기"]),
        "remove_access": pick(["remove access", "supprimer l'accès", "액세스 제거"]),
        "mcid": pick(["Microsoft Certification ID (MCID)", "ID de certification Microsoft (MCID)", "Microsoft 인증 ID(MCID)"]),
        "your_certifications": pick(["Your certifications", "Vos certifications", "내 인증"]),
        "no_certifications": pick(["No certifications yet.", "Aucune certification pour le moment.", "아직 인증이 없습니다."]),
        "expires": pick(["expires", "expire le", "만료일"]),
        "expiring_soon": pick(["expires soon: renew it", "expire bientôt : renouvelez-la", "곧 만료됨: 갱신하세요"]),
        "counts_for": pick(["counts for", "compte pour", "반영 대상"]),
        "not_counting_expired": pick(["expired", "expirée", "만료됨"]),
        "not_counting_not_in_catalog": pick([
            "does not count for an organization",
            "ne compte pas pour une organisation",
            "조직에 반영되지 않음",
        ]),
        "not_counting_not_linked": pick(["not linked now", "non liée actuellement", "현재 연결되지 않음"]),
        "next_association": pick([
            "Next available date for a subsequent association",
            "Prochaine date disponible pour une nouvelle association",
            "다음 연결이 가능한 날짜",
        ]),
        "sign_in_title": pick(["Sign in to Partner Center", "Se connecter à l'Espace partenaires", "파트너 센터에 로그인"]),
        "sign_in_text": pick([
            "Sign in with your work account to see your learning.",
            "Connectez-vous avec votre compte professionnel pour voir votre apprentissage.",
            "회사 계정으로 로그인하여 학습 내용을 확인하세요.",
        ]),
        "sign_in": pick(["Sign in", "Se connecter", "로그인"]),
        "sign_out": pick(["Sign out", "Se déconnecter", "로그아웃"]),
        "signed_in_as": pick(["Signed in as", "Connecté en tant que", "로그인한 사용자"]),
        "language": pick(["Language", "Langue", "언어"]),
        "linked": pick(["Your account is linked.", "Votre compte est lié.", "계정이 연결되었습니다."]),
        "removed": pick(["Access removed.", "Accès supprimé.", "액세스가 제거되었습니다."]),
        "try_again": pick(["Try again", "Réessayer", "다시 시도"]),
        "retry_in": pick(["You can try again in {seconds} seconds.", "Vous pourrez réessayer dans {seconds} secondes.", "{seconds}초 후에 다시 시도할 수 있습니다."]),
        "use_personal": pick(["Sign in with your personal account", "Se connecter avec votre compte personnel", "개인 계정으로 로그인"]),
        "start_again": pick(["Start again", "Recommencer", "다시 시작"]),
        "move_here": pick([
            "Move this account to my organization",
            "Déplacer ce compte vers mon organisation",
            "이 계정을 내 조직으로 이동",
        ]),
    })
}

/// The portal's own refusals (those it finds before calling idlink), by language.
pub(crate) fn own_refusal(reason: OwnRefusal, locale: Locale) -> String {
    let texts = match reason {
        OwnRefusal::NotThisBrowser => [
            "This sign-in was not started in this browser, so nothing was linked. Start again from your profile page.",
            "Cette connexion n'a pas été démarrée dans ce navigateur : aucun compte n'a été lié. Recommencez depuis votre page de profil.",
            "이 로그인은 이 브라우저에서 시작되지 않았으므로 연결된 항목이 없습니다. 프로필 페이지에서 다시 시작하세요.",
        ],
        OwnRefusal::SignInFailed => [
            "We could not sign you in to Partner Center. Try again.",
            "Nous n'avons pas pu vous connecter à l'Espace partenaires. Réessayez.",
            "파트너 센터에 로그인할 수 없습니다. 다시 시도하세요.",
        ],
        OwnRefusal::FormExpired => [
            "This page has expired. Refresh it and try again.",
            "Cette page a expiré. Actualisez-la et réessayez.",
            "이 페이지가 만료되었습니다. 새로 고친 후 다시 시도하세요.",
        ],
        OwnRefusal::Unreachable => [
            "The service is temporarily unavailable. Please try again in a few minutes.",
            "Le service est temporairement indisponible. Réessayez dans quelques minutes.",
            "서비스를 일시적으로 사용할 수 없습니다. 몇 분 후에 다시 시도하세요.",
        ],
    };
    texts[locale.index()].to_owned()
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum OwnRefusal {
    /// A callback whose flow this browser session did not begin.
    NotThisBrowser,
    /// The work sign-in did not verify.
    SignInFailed,
    /// A form without this session's CSRF token.
    FormExpired,
    /// idlinkd could not be reached.
    Unreachable,
}

/// What the page offers after a refusal, by idlink's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    /// Begin the same kind again (a cancelled or failed sign-in, a limit that passed).
    TryAgain,
    /// Begin again, choosing the account at the provider (no login hint).
    UsePersonal,
    /// The flow is gone (expired, replayed, begun elsewhere): start over from the panel.
    StartAgain,
    /// The work session is over: sign in again.
    SignIn,
    /// The account is linked at another organisation: begin again, moving it here.
    Transfer,
    /// Nothing to do now (the date or delay is in the message).
    None,
}

pub(crate) fn action_for(reason: &str) -> Action {
    match reason {
        "NOT_A_PERSONAL_ACCOUNT" => Action::UsePersonal,
        "SIGN_IN_CANCELLED"
        | "SIGN_IN_FAILED"
        | "ISSUER_MISMATCH"
        | "ID_TOKEN_INVALID"
        | "NONCE_MISMATCH"
        | "IDENTITY_PROVIDER_UNAVAILABLE"
        | "STORE_UNAVAILABLE"
        | "INTERNAL"
        | "TIMED_OUT"
        | "REQUEST_IN_FLIGHT"
        | "SHUTTING_DOWN"
        | "STARTING" => Action::TryAgain,
        "FLOW_NOT_FOUND" | "FLOW_EXPIRED" | "FLOW_OWNED_BY_ANOTHER_USER" | "CODE_REJECTED" | "REDIRECT_URI_MISMATCH" => Action::StartAgain,
        "MISSING_TOKEN" | "INVALID_TOKEN" | "TOKEN_TOO_LARGE" | "INSUFFICIENT_SCOPE" => Action::SignIn,
        "ACCOUNT_LINKED_ELSEWHERE" => Action::Transfer,
        _ => Action::None,
    }
}

pub(crate) fn kind_key(kind: pb::LinkKind) -> &'static str {
    match kind {
        pb::LinkKind::PartnerUniversity => "pu",
        pb::LinkKind::MicrosoftLearning => "ml",
        pb::LinkKind::Unspecified => "unspecified",
    }
}

pub(crate) fn kind_of(key: &str) -> Option<pb::LinkKind> {
    match key {
        "pu" => Some(pb::LinkKind::PartnerUniversity),
        "ml" => Some(pb::LinkKind::MicrosoftLearning),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(doc: &str, columns: usize) -> Vec<Vec<String>> {
        doc.lines()
            .filter_map(|line| {
                let cells: Vec<String> = line.split('|').map(|c| c.trim().to_owned()).collect();
                let reason = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let code = cells.get(2)?;
                (cells.len() > columns && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                    .then(|| cells[1..=columns].iter().map(|c| c.trim_matches('`').to_owned()).collect::<Vec<_>>())
                    .filter(|_| !reason.is_empty())
            })
            .collect()
    }

    /// The integration guide lists every reason idlink gives (docs/design.md's table), with its
    /// code and the action this portal really offers for it.
    #[test]
    fn the_guide_gives_every_reason_the_action_the_portal_takes() {
        let design = table(include_str!("../../../docs/design.md"), 2);
        let guide = table(include_str!("../../../docs/portal.md"), 3);
        assert!(design.len() > 40, "{design:?}");
        let listed: Vec<Vec<String>> = guide.iter().map(|row| row[..2].to_vec()).collect();
        assert_eq!(listed, design, "docs/portal.md's reasons and codes are docs/design.md's, in its order");
        for row in &guide {
            let action = serde_json::to_value(action_for(&row[0])).unwrap();
            assert_eq!(action.as_str(), Some(row[2].as_str()), "{}", row[0]);
        }
    }

    #[test]
    fn every_language_has_every_word() {
        let keys = |locale| words(locale).as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(Locale::Fr), keys(Locale::En));
        for locale in [Locale::En, Locale::Fr, Locale::Ko] {
            assert!(words(locale).as_object().unwrap().values().all(|v| !v.as_str().unwrap_or_default().is_empty()));
        }
        assert_eq!(words(Locale::En)["pu_button"], "Get Partner University access", "the guide's words");
        assert_eq!(words(Locale::En)["ml_button"], "Associate Microsoft Learning account");
    }
}
