//! The link lifecycle as callers see it: begin a flow, complete it, list, remove, resolve.
//! Ties the association client (oidc), the rules (domain: links, flows, who may do what) and
//! the store together; knows nothing of gRPC. Every mutation, and every refusal of one, is
//! logged to the `audit` target with ids only — never a personal email, code or token.

use std::{collections::HashMap, fmt, net::SocketAddr, sync::Arc};

use chrono::{DateTime, Duration, Utc};

use crate::{
    domain::{
        AccountKey, Associations, DomainError, Flow, Link, LinkKind, LinkMode, NewLink, Operation, Principal, REASON_USER_REQUEST,
        StateHash, TenantId,
    },
    limits::BeginLimiter,
    oidc::{AssociationClient, Callback, OidcError},
    store::{DynStore, LinkPage, ListQuery, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum LinkingError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Oidc(#[from] OidcError),
    #[error("no identity provider is configured for {kind}")]
    KindNotConfigured { kind: LinkKind },
    #[error("the sign-in ended with an error (cancelled: {cancelled})")]
    SignInFailed { cancelled: bool },
    #[error("too many sign-ins begun; retry in {retry_after_seconds}s")]
    RateLimited { retry_after_seconds: u64 },
    #[error("the caller already holds {limit} change-feed streams on this replica")]
    TooManyWatchers { limit: u32 },
    #[error("a full recalculation is already running on this replica")]
    RecalculationRunning,
    #[error("the server is shutting down")]
    ShuttingDown,
}

pub type Result<T, E = LinkingError> = std::result::Result<T, E>;

/// Who is acting, and the request's audit context.
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    pub request_id: String,
    pub peer: Option<SocketAddr>,
}

impl Actor {
    fn user(&self) -> Result<(&AccountKey, &str)> {
        match &self.principal {
            Principal::User { key, upn, .. } => Ok((key, upn)),
            Principal::App { .. } => Err(DomainError::CallerNotAUser.into()),
        }
    }

    fn authorize(&self, operation: Operation<'_>) -> Result<()> {
        Ok(self.principal.authorize(operation)?)
    }
}

/// `user:<tid>/<oid>` or `app:<app id>@<tid>`: who, in an audit line.
struct Who<'a>(&'a Principal);

impl fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Principal::User { key, .. } => write!(f, "user:{key}"),
            Principal::App { tenant, app_id, .. } => write!(f, "app:{app_id}@{}", tenant.as_str()),
        }
    }
}

fn audit<T>(actor: &Actor, action: &str, subject: Option<&AccountKey>, outcome: &Result<T>, link_id: impl Fn(&T) -> Option<String>) {
    let who = Who(&actor.principal);
    let peer = actor.peer.map(|p| p.to_string()).unwrap_or_default();
    let subject = subject.map(ToString::to_string).unwrap_or_default();
    match outcome {
        Ok(value) => tracing::info!(target: "audit", action, outcome = "ok", %who, subject, link_id = link_id(value).unwrap_or_default(),
            request_id = actor.request_id, peer, "mutation"),
        Err(e) => tracing::info!(target: "audit", action, outcome = "refused", %who, subject, reason = %e,
            request_id = actor.request_id, peer, "mutation refused"),
    }
}

pub struct BeginRequest<'a> {
    pub kind: LinkKind,
    pub redirect_uri: &'a str,
    pub login_hint: Option<&'a str>,
    pub mode: LinkMode,
}

pub struct Begun {
    pub authorization_url: String,
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

pub struct CompleteRequest<'a> {
    pub state: &'a str,
    pub code: &'a str,
    pub iss: Option<&'a str>,
    pub error: Option<&'a str>,
    pub redirect_uri: Option<&'a str>,
}

mod watch;
pub use watch::EventStream;
use watch::Watchers;

pub struct RemoveRequest<'a> {
    pub kind: LinkKind,
    /// Whose link: `None` for the caller's own.
    pub named: Option<AccountKey>,
    pub reason: Option<&'a str>,
    pub etag: Option<&'a str>,
}

/// A work user's active links, and for each kind that limits associations when the personal
/// account they linked last may be associated again (`None`: now); only for the user themself.
pub struct LinksOf {
    pub links: Vec<Link>,
    pub next_associations: Vec<(LinkKind, Option<DateTime<Utc>>)>,
}

pub struct Linker {
    store: DynStore,
    kinds: HashMap<LinkKind, AssociationClient>,
    flow_ttl: Duration,
    limiter: BeginLimiter,
    watchers: Arc<Watchers>,
}

impl Linker {
    pub fn new(
        store: DynStore,
        kinds: HashMap<LinkKind, AssociationClient>,
        flow_ttl: Duration,
        limiter: BeginLimiter,
        watch_streams_per_caller: u32,
    ) -> Self {
        Self { store, kinds, flow_ttl, limiter, watchers: Arc::new(Watchers::new(watch_streams_per_caller)) }
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub fn kinds(&self) -> &HashMap<LinkKind, AssociationClient> {
        &self.kinds
    }

    /// Change-feed streams open on this replica (the metrics).
    pub fn watch_streams(&self) -> u64 {
        self.watchers.open()
    }

    fn client(&self, kind: LinkKind) -> Result<&AssociationClient> {
        self.kinds.get(&kind).ok_or(LinkingError::KindNotConfigured { kind })
    }

    pub async fn begin(&self, actor: &Actor, request: BeginRequest<'_>, now: DateTime<Utc>) -> Result<Begun> {
        let outcome = self.begin_inner(actor, request, now).await;
        audit(actor, "flow.begin", actor.principal.user(), &outcome, |_| None);
        outcome
    }

    async fn begin_inner(&self, actor: &Actor, request: BeginRequest<'_>, now: DateTime<Utc>) -> Result<Begun> {
        actor.authorize(Operation::BeginLink)?;
        let (key, upn) = actor.user()?;
        if let Err(retry_after_seconds) = self.limiter.check(key, now) {
            return Err(LinkingError::RateLimited { retry_after_seconds });
        }
        let client = self.client(request.kind)?;
        let authorization = client.authorize(request.redirect_uri, request.login_hint)?;
        let flow = Flow {
            kind: request.kind,
            owner: key.clone(),
            owner_upn: upn.to_owned(),
            redirect_uri: request.redirect_uri.to_owned(),
            pkce_verifier: authorization.pkce_verifier,
            nonce: authorization.nonce,
            mode: request.mode,
            created_at: now,
            expires_at: now + self.flow_ttl,
        };
        let sealed = flow.seal(&authorization.state).map_err(|_| StoreError::Corrupt { detail: "cannot seal a flow".into() })?;
        tracing::Instrument::instrument(
            self.store.put_flow(&StateHash::of(&authorization.state), &sealed),
            tracing::info_span!("store.put_flow"),
        )
        .await?;
        Ok(Begun { authorization_url: authorization.url.to_string(), state: authorization.state, expires_at: flow.expires_at })
    }

    pub async fn complete(&self, actor: &Actor, request: CompleteRequest<'_>, now: DateTime<Utc>) -> Result<Link> {
        let outcome = self.complete_inner(actor, request, now).await;
        audit(actor, "link.create", actor.principal.user(), &outcome, |l: &Link| Some(l.id.as_str().to_owned()));
        outcome
    }

    async fn complete_inner(&self, actor: &Actor, request: CompleteRequest<'_>, now: DateTime<Utc>) -> Result<Link> {
        actor.authorize(Operation::CompleteLink)?;
        let (key, upn) = actor.user()?;
        // Consumed on the first attempt, whatever its outcome (invariant 5).
        let flow = self.store.take_flow(&StateHash::of(request.state)).await?.ok_or(DomainError::FlowNotFound)?.open(request.state)?;
        flow.check_completion(key, request.redirect_uri, now)?;
        if let Some(error) = request.error {
            // The provider said no: never call its token endpoint.
            return Err(LinkingError::SignInFailed { cancelled: error == "access_denied" });
        }
        let client = self.client(flow.kind)?;
        let personal = tracing::Instrument::instrument(
            client.complete(Callback { code: request.code, iss: request.iss }, &flow.redirect_uri, &flow.pkce_verifier, &flow.nonce, now),
            tracing::info_span!("oidc.complete", kind = %flow.kind),
        )
        .await?;
        let new = NewLink {
            kind: flow.kind,
            work: key.clone(),
            work_upn: upn.to_owned(),
            personal: personal.key,
            personal_sub: personal.subject,
            profile: personal.profile,
        };
        let span = tracing::info_span!("store.link", kind = %new.kind, link_id = tracing::field::Empty);
        let mode = client.rules().applied_to(flow.mode);
        let link = tracing::Instrument::instrument(self.store.link(new, mode, now), span.clone()).await?;
        span.record("link_id", link.id.as_str());
        Ok(self.with_mcids(vec![link]).await?.remove(0))
    }

    /// Joins each active Microsoft Learning link's MCID from the Learning profiles (one read
    /// for all of them).
    async fn with_mcids(&self, mut links: Vec<Link>) -> Result<Vec<Link>> {
        let learning: Vec<usize> =
            (0..links.len()).filter(|&i| links[i].kind == LinkKind::MicrosoftLearning && links[i].is_active()).collect();
        if learning.is_empty() {
            return Ok(links);
        }
        let accounts: Vec<AccountKey> = learning.iter().map(|&i| links[i].personal.clone()).collect();
        for (i, mcid) in learning.into_iter().zip(self.store.mcids(&accounts).await?) {
            links[i].mcid = mcid;
        }
        Ok(links)
    }

    /// The active links of the work user `named` (the caller when it names nobody), and for the
    /// work user themself when they may next associate each kind that limits it.
    pub async fn links_of(&self, actor: &Actor, named: Option<AccountKey>, now: DateTime<Utc>) -> Result<LinksOf> {
        let user = actor.principal.subject(named)?;
        actor.authorize(Operation::GetLinks { of: &user })?;
        let links = self.with_mcids(self.store.active_links(&user).await?).await?;
        let mut next_associations = Vec::new();
        if actor.principal.user() == Some(&user) {
            for kind in LinkKind::ALL {
                let Some(client) = self.kinds.get(&kind) else { continue };
                let limit = client.rules().limit;
                if limit.is_none() {
                    continue;
                }
                let active = links.iter().find(|l| l.kind == kind);
                let personal = match active {
                    Some(link) => Some(link.personal.clone()),
                    None => self.store.last_removed(kind, &user).await?.map(|tombstone| tombstone.personal),
                };
                let next = match personal {
                    Some(personal) => {
                        let history = Associations::recorded_or_held(self.store.associations(kind, &personal).await?, active);
                        limit.next_allowed(&history).map(|(at, _)| at).filter(|at| *at > now)
                    }
                    None => None,
                };
                next_associations.push((kind, next));
            }
        }
        Ok(LinksOf { links, next_associations })
    }

    /// "Remove access" to the `kind` link of the work user `named` (the caller when it names
    /// nobody), for `reason` ([`REASON_USER_REQUEST`] when none is given).
    pub async fn remove(&self, actor: &Actor, request: RemoveRequest<'_>, now: DateTime<Utc>) -> Result<Link> {
        let owner = actor.principal.subject(request.named);
        let outcome = async {
            let owner = owner.as_ref().map_err(Clone::clone)?;
            actor.authorize(Operation::RemoveLink { of: owner })?;
            let (by, _) = actor.user()?;
            let reason = request.reason.unwrap_or(REASON_USER_REQUEST);
            Ok(self.store.remove(request.kind, owner, by, reason, request.etag, now).await?)
        }
        .await;
        audit(actor, "link.remove", owner.as_ref().ok(), &outcome, |l: &Link| Some(l.id.as_str().to_owned()));
        outcome
    }

    /// A deleted work account: every active link of `user` tombstoned ("work_account_deleted"),
    /// removed by the admin calling, or — for enrolment's app — in the account's own name.
    /// `note` goes to the audit line only.
    pub async fn remove_work_user(&self, actor: &Actor, user: &AccountKey, note: &str, now: DateTime<Utc>) -> Result<Vec<Link>> {
        let outcome = async {
            actor.authorize(Operation::RemoveWorkUser { of: user })?;
            let by = actor.principal.user().unwrap_or(user);
            Ok(self.store.remove_work_user(user, by, now).await?)
        }
        .await;
        let removed = |links: &Vec<Link>| Some(links.iter().map(|l| l.id.as_str()).collect::<Vec<_>>().join(","));
        audit(actor, "work_user.remove", Some(user), &outcome, removed);
        if outcome.is_ok() && !note.is_empty() {
            tracing::info!(target: "audit", action = "work_user.remove", note, request_id = actor.request_id, "note");
        }
        outcome
    }

    pub async fn list(&self, actor: &Actor, organization: &TenantId, query: &ListQuery) -> Result<LinkPage> {
        actor.authorize(Operation::ListLinks { organization })?;
        let page = self.store.links_of_tenant(organization, query).await?;
        Ok(LinkPage { links: self.with_mcids(page.links).await?, next: page.next })
    }

    pub async fn resolve(&self, actor: &Actor, kind: LinkKind, personal: &AccountKey) -> Result<Link> {
        actor.authorize(Operation::ResolvePersonalAccount)?;
        Ok(self.store.active_link_of_personal(kind, personal).await?.ok_or(DomainError::PersonalAccountNotLinked)?)
    }

    /// Deletes expired flows (run periodically).
    pub async fn purge_expired_flows(&self, now: DateTime<Utc>) -> Result<usize> {
        Ok(self.store.purge_expired_flows(now).await?)
    }
}
