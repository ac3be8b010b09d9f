//! The pages: the "Your learning" panel, its forms, and the two callbacks. Every state change
//! is a POST carrying the session's CSRF token; every callback ends in a redirect to the panel,
//! so no code or state stays in the address bar or the history.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use idlink_client::{ClientError, ClientOptions, IdlinkClient, pb};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tower_sessions::Session;

use crate::{
    Portal,
    signin::{PendingSignIn, WorkUser, constant_time_eq},
    text::{Action, Locale, OwnRefusal, action_for, kind_key, kind_of, own_refusal, word, words},
};

type Shared = State<Arc<Portal>>;

const USER: &str = "user";
const SIGNIN: &str = "signin";
const FLOWS: &str = "flows";
const CSRF: &str = "csrf";
const NOTICE: &str = "notice";
const LANG: &str = "lang";
/// Association flows a session remembers: enough for both kinds and a few retries.
const FLOWS_KEPT: usize = 8;

/// An association flow begun in this session: its state's hash (the state itself stays out of
/// the session store), its kind, and whether its callback came already.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BegunFlow {
    state_hash: String,
    kind: String,
    used: bool,
}

/// What the panel says once, after a redirect.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Notice {
    ok: bool,
    text: String,
    /// The box it is about ("pu", "ml"), if any.
    kind: Option<String>,
    action: Option<Action>,
    retry_seconds: Option<u64>,
}

pub(crate) fn templates() -> anyhow::Result<minijinja::Environment<'static>> {
    let mut env = minijinja::Environment::new();
    // `.html` templates escape everything they show.
    env.add_template("layout.html", include_str!("../templates/layout.html"))?;
    env.add_template("panel.html", include_str!("../templates/panel.html"))?;
    env.add_template("signin.html", include_str!("../templates/signin.html"))?;
    env.add_template("notice.html", include_str!("../templates/notice.html"))?;
    Ok(env)
}

fn state_hash(state: &str) -> String {
    Sha256::digest(state.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn random_token() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

async fn locale(session: &Session, headers: &HeaderMap) -> Locale {
    match session.get::<String>(LANG).await.ok().flatten().as_deref() {
        Some(lang) => Locale::from_accept_language(Some(lang)),
        None => Locale::from_accept_language(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok())),
    }
}

fn lang_code(locale: Locale) -> &'static str {
    match locale {
        Locale::En => "en",
        Locale::Fr => "fr",
        Locale::Ko => "ko",
    }
}

/// The signed-in user, while their token for idlink lasts.
async fn user(session: &Session) -> Option<WorkUser> {
    let user: WorkUser = session.get(USER).await.ok().flatten()?;
    (user.expires_at > chrono::Utc::now().timestamp() + 30).then_some(user)
}

async fn csrf_token(session: &Session) -> String {
    if let Ok(Some(token)) = session.get::<String>(CSRF).await {
        return token;
    }
    let token = random_token();
    let _ = session.insert(CSRF, &token).await;
    token
}

async fn csrf_ok(session: &Session, presented: &str) -> bool {
    match session.get::<String>(CSRF).await {
        Ok(Some(token)) => constant_time_eq(token.as_bytes(), presented.as_bytes()),
        _ => false,
    }
}

async fn notify(session: &Session, notice: Notice) {
    let _ = session.insert(NOTICE, notice).await;
}

fn refusal_notice(error: &ClientError, kind: Option<&str>, locale: Locale) -> Notice {
    match error {
        ClientError::Rpc { reason, message, retry_after, .. } => {
            let action = action_for(reason);
            Notice {
                ok: false,
                text: message.clone(),
                kind: kind.map(str::to_owned),
                action: Some(action),
                retry_seconds: retry_after.map(|d| d.as_secs().max(1)),
            }
        }
        // Not a refusal: idlinkd did not answer. Its detail is for the log, not the page.
        other => {
            tracing::warn!(error = %other, "idlinkd did not answer");
            Notice {
                ok: false,
                text: own_refusal(OwnRefusal::Unreachable, locale),
                kind: kind.map(str::to_owned),
                action: Some(Action::TryAgain),
                retry_seconds: None,
            }
        }
    }
}

fn idlink(portal: &Portal, user: &WorkUser, locale: Locale) -> Result<IdlinkClient, ClientError> {
    let options = ClientOptions::new(portal.config.idlink_endpoint.clone()).token(user.access_token.clone()).accept_language(locale.tag());
    IdlinkClient::with_channel(portal.channel.clone(), options)
}

fn render(portal: &Portal, name: &str, context: minijinja::Value) -> Response {
    match portal.templates.get_template(name).and_then(|t| t.render(context)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, template = name, "a page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "The page could not be shown.").into_response()
        }
    }
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

pub(crate) async fn home() -> Response {
    see_other("/profile")
}

#[derive(Deserialize)]
pub(crate) struct ProfileQuery {
    lang: Option<String>,
}

pub(crate) async fn profile(State(portal): Shared, session: Session, headers: HeaderMap, Query(q): Query<ProfileQuery>) -> Response {
    if let Some(lang) = q.lang {
        // The language switch: remembered for the session, then a clean address.
        let _ = session.insert(LANG, lang_code(Locale::from_accept_language(Some(&lang)))).await;
        return see_other("/profile");
    }
    let locale = locale(&session, &headers).await;
    let notice: Option<Notice> = session.remove(NOTICE).await.ok().flatten();
    let csrf = csrf_token(&session).await;
    let base = |notice: &Option<Notice>| {
        minijinja::context! { t => words(locale), lang => lang_code(locale), notice => notice, csrf => csrf }
    };
    let Some(user) = user(&session).await else {
        return render(&portal, "signin.html", base(&notice));
    };
    let client = match idlink(&portal, &user, locale) {
        Ok(client) => client,
        Err(e) => return render(&portal, "signin.html", base(&Some(refusal_notice(&e, None, locale)))),
    };
    let loaded = async { Ok::<_, ClientError>((client.my_links().await?, client.my_certifications().await?)) }.await;
    let (links, certifications) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            let notice = refusal_notice(&e, None, locale);
            if notice.action == Some(Action::SignIn) {
                let _ = session.remove::<WorkUser>(USER).await;
                return render(&portal, "signin.html", base(&Some(notice)));
            }
            return render(&portal, "panel.html", minijinja::context! { user => user_view(&user), ..base(&Some(notice)) });
        }
    };
    let boxes = [pb::LinkKind::PartnerUniversity, pb::LinkKind::MicrosoftLearning].map(|kind| {
        let link = links.links.iter().find(|l| l.kind == kind as i32);
        let next = links
            .next_associations
            .iter()
            .find(|n| n.kind == kind as i32)
            .and_then(|n| n.next_association_available_at)
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
            .map(|at| locale.date(at));
        minijinja::context! {
            kind => kind_key(kind),
            linked => link.is_some(),
            account => link.map(personal_label),
            mcid => link.map(|l| l.mcid.clone()).filter(|m| !m.is_empty()),
            next_association => next,
        }
    });
    let pu_account = links.links.iter().find(|l| l.kind == pb::LinkKind::PartnerUniversity as i32).map(personal_label);
    let learning_linked = links.links.iter().any(|l| l.kind == pb::LinkKind::MicrosoftLearning as i32);
    let shortcut = pu_account.filter(|_| !learning_linked).map(|account| word(locale, "shortcut").replace("{account}", &account));
    let certifications: Vec<_> = certifications.certifications.iter().map(|c| certification_view(c, locale)).collect();
    render(
        &portal,
        "panel.html",
        minijinja::context! {
            user => user_view(&user),
            boxes => boxes,
            shortcut => shortcut,
            certifications => certifications,
            training_url => portal.config.training_url,
            ..base(&notice)
        },
    )
}

fn user_view(user: &WorkUser) -> minijinja::Value {
    minijinja::context! { name => user.name, username => user.username }
}

fn personal_label(link: &pb::Link) -> String {
    let personal = link.personal_account.clone().unwrap_or_default();
    if personal.email.is_empty() { personal.display_name } else { personal.email }
}

fn certification_view(c: &pb::MyCertification, locale: Locale) -> minijinja::Value {
    let why = match pb::NotCountingReason::try_from(c.not_counting).unwrap_or_default() {
        pb::NotCountingReason::Expired => Some("not_counting_expired"),
        pb::NotCountingReason::NotInCatalog => Some("not_counting_not_in_catalog"),
        pb::NotCountingReason::NotLinked => Some("not_counting_not_linked"),
        pb::NotCountingReason::Unspecified => None,
    }
    .map(|key| word(locale, key));
    minijinja::context! {
        id => c.certification_id,
        title => if c.title.is_empty() { c.certification_id.clone() } else { c.title.clone() },
        expires => c.expires_at.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0)).map(|at| locale.date(at)),
        expiring_soon => c.expiring_soon,
        areas => c.credits.iter().map(|a| if a.name.is_empty() { a.area_id.clone() } else { a.name.clone() }).collect::<Vec<_>>(),
        not_counting => why,
    }
}

/// A box's form, accepted: a known kind, this session's CSRF token, a signed-in user. Otherwise
/// the answer to give (a form from another page or session changes nothing).
async fn accepted(session: &Session, kind: &str, csrf: &str, locale: Locale) -> Result<(pb::LinkKind, WorkUser), Response> {
    let Some(link_kind) = kind_of(kind) else { return Err((StatusCode::BAD_REQUEST, "unknown kind").into_response()) };
    if !csrf_ok(session, csrf).await {
        let text = own_refusal(OwnRefusal::FormExpired, locale);
        notify(session, Notice { text, kind: Some(kind.to_owned()), action: Some(Action::TryAgain), ..Notice::default() }).await;
        return Err(see_other("/profile"));
    }
    let user = user(session).await.ok_or_else(|| see_other("/profile"))?;
    Ok((link_kind, user))
}

#[derive(Deserialize)]
pub(crate) struct LinkForm {
    kind: String,
    csrf: String,
    /// "Use ⟨the Partner University account⟩ to associate my Microsoft Learning account".
    #[serde(default)]
    shortcut: bool,
    /// Move an account linked at another organisation here (where the kind refuses by default).
    #[serde(default)]
    transfer: bool,
}

/// "Get Partner University access" / "Associate Microsoft Learning account": BeginLink, then on
/// to the provider's sign-in page.
pub(crate) async fn begin_link(State(portal): Shared, session: Session, headers: HeaderMap, Form(form): Form<LinkForm>) -> Response {
    let locale = locale(&session, &headers).await;
    let (kind, user) = match accepted(&session, &form.kind, &form.csrf, locale).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let outcome = async {
        let client = idlink(&portal, &user, locale)?;
        // The shortcut's account is the one linked for Partner University, read here, never
        // taken from the form.
        let login_hint = if form.shortcut {
            client.get_links().await?.into_iter().find(|l| l.kind == pb::LinkKind::PartnerUniversity as i32).map(|l| personal_label(&l))
        } else {
            None
        };
        client
            .begin_link(pb::BeginLinkRequest {
                kind: kind as i32,
                redirect_uri: portal.config.link_redirect_uri(),
                login_hint,
                transfer: form.transfer,
                ..Default::default()
            })
            .await
    }
    .await;
    match outcome {
        Ok(begun) => {
            let mut flows: Vec<BegunFlow> = session.get(FLOWS).await.ok().flatten().unwrap_or_default();
            flows.push(BegunFlow { state_hash: state_hash(&begun.state), kind: form.kind, used: false });
            let excess = flows.len().saturating_sub(FLOWS_KEPT);
            flows.drain(..excess);
            let _ = session.insert(FLOWS, flows).await;
            see_other(&begun.authorization_url)
        }
        Err(e) => {
            notify(&session, refusal_notice(&e, Some(&form.kind), locale)).await;
            see_other("/profile")
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Callback {
    #[serde(default)]
    state: String,
    #[serde(default)]
    code: String,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where the provider sends the browser back after the personal sign-in. Only a flow this
/// browser session began is completed; whatever happens, the browser goes on to the panel.
pub(crate) async fn link_callback(State(portal): Shared, session: Session, headers: HeaderMap, Query(q): Query<Callback>) -> Response {
    let locale = locale(&session, &headers).await;
    let mut flows: Vec<BegunFlow> = session.get(FLOWS).await.ok().flatten().unwrap_or_default();
    let hash = state_hash(&q.state);
    let (Some(flow), Some(user)) =
        (flows.iter_mut().find(|f| constant_time_eq(f.state_hash.as_bytes(), hash.as_bytes())), user(&session).await)
    else {
        let text = own_refusal(OwnRefusal::NotThisBrowser, locale);
        notify(&session, Notice { text, action: Some(Action::StartAgain), ..Notice::default() }).await;
        return see_other("/profile");
    };
    // A second visit (a replayed callback) still goes to idlinkd, which knows the flow is spent.
    flow.used = true;
    let kind = flow.kind.clone();
    let _ = session.insert(FLOWS, &flows).await;
    let outcome = async {
        idlink(&portal, &user, locale)?
            .complete_link(pb::CompleteLinkRequest {
                state: q.state.clone(),
                code: q.code.clone(),
                iss: q.iss.clone(),
                error: q.error.clone(),
                error_description: q.error_description.clone(),
                redirect_uri: Some(portal.config.link_redirect_uri()),
                ..Default::default()
            })
            .await
    }
    .await;
    let notice = match outcome {
        Ok(_) => Notice { ok: true, text: word(locale, "linked").to_owned(), kind: Some(kind), ..Notice::default() },
        Err(e) => refusal_notice(&e, Some(&kind), locale),
    };
    notify(&session, notice).await;
    see_other("/profile")
}

#[derive(Deserialize)]
pub(crate) struct RemoveForm {
    kind: String,
    csrf: String,
}

/// "remove access".
pub(crate) async fn remove_access(State(portal): Shared, session: Session, headers: HeaderMap, Form(form): Form<RemoveForm>) -> Response {
    let locale = locale(&session, &headers).await;
    let (kind, user) = match accepted(&session, &form.kind, &form.csrf, locale).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let outcome = async {
        idlink(&portal, &user, locale)?
            .remove_link(pb::RemoveLinkRequest { kind: kind as i32, reason: "user_request".into(), ..Default::default() })
            .await
    }
    .await;
    let notice = match outcome {
        Ok(_) => Notice { ok: true, text: word(locale, "removed").to_owned(), kind: Some(form.kind), ..Notice::default() },
        Err(e) => refusal_notice(&e, Some(&form.kind), locale),
    };
    notify(&session, notice).await;
    see_other("/profile")
}

/// The work sign-in: on to the work authority.
pub(crate) async fn sign_in(State(portal): Shared, session: Session, headers: HeaderMap) -> Response {
    let locale = locale(&session, &headers).await;
    match portal.signin.begin() {
        Ok((url, pending)) => {
            let _ = session.insert(SIGNIN, pending).await;
            see_other(&url)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot begin a work sign-in");
            notify(&session, Notice { text: own_refusal(OwnRefusal::SignInFailed, locale), ..Notice::default() }).await;
            see_other("/profile")
        }
    }
}

pub(crate) async fn sign_in_callback(State(portal): Shared, session: Session, headers: HeaderMap, Query(q): Query<Callback>) -> Response {
    let locale = locale(&session, &headers).await;
    let pending: Option<PendingSignIn> = session.remove(SIGNIN).await.ok().flatten();
    let signed_in = match (pending, q.error.as_deref()) {
        (Some(pending), None) => portal.signin.complete(&pending, &q.state, &q.code).await.map_err(|e| e.to_string()),
        (None, _) => Err("no sign-in was begun in this session".to_owned()),
        (Some(_), Some(error)) => Err(format!("the provider answered {error}")),
    };
    match signed_in {
        Ok(user) => {
            // A new session id once signed in (no fixation), a new CSRF token with it.
            let _ = session.cycle_id().await;
            let _ = session.insert(USER, user).await;
            let _ = session.insert(CSRF, random_token()).await;
        }
        Err(why) => {
            tracing::info!(why, "a work sign-in failed");
            notify(
                &session,
                Notice { text: own_refusal(OwnRefusal::SignInFailed, locale), action: Some(Action::SignIn), ..Notice::default() },
            )
            .await;
        }
    }
    see_other("/profile")
}

#[derive(Deserialize)]
pub(crate) struct SignOutForm {
    csrf: String,
}

pub(crate) async fn sign_out(session: Session, Form(form): Form<SignOutForm>) -> Response {
    if csrf_ok(&session, &form.csrf).await {
        let lang: Option<String> = session.get(LANG).await.ok().flatten();
        let _ = session.flush().await;
        if let Some(lang) = lang {
            let _ = session.insert(LANG, lang).await;
        }
    }
    see_other("/profile")
}

pub(crate) async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../static/portal.css")).into_response()
}
