//! The link lifecycle as the callers see it: begin a flow, complete it, list, remove. Ties
//! the association client (oidc), the rules (domain) and the store together; knows nothing
//! of gRPC. Every outcome that changes or refuses to change a link is logged to the `audit`
//! target with ids only — never a personal email, code or token.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::{
    domain::{AccountKey, DomainError, Flow, Link, LinkKind, LinkMode, NewLink, StateHash},
    oidc::{AssociationClient, Callback, OidcError},
    store::{DynStore, StoreError},
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
    #[error("the redirect URI differs from the one the flow began with")]
    RedirectUriMismatch,
    #[error("the sign-in ended with an error (cancelled: {cancelled})")]
    SignInFailed { cancelled: bool },
}

pub type Result<T, E = LinkingError> = std::result::Result<T, E>;

/// The work user acting, as authenticated.
#[derive(Debug, Clone)]
pub struct Actor {
    pub key: AccountKey,
    pub upn: String,
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

pub struct Linker {
    store: DynStore,
    kinds: HashMap<LinkKind, AssociationClient>,
    flow_ttl: Duration,
}

impl Linker {
    pub fn new(store: DynStore, kinds: HashMap<LinkKind, AssociationClient>, flow_ttl: Duration) -> Self {
        Self { store, kinds, flow_ttl }
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub fn kinds(&self) -> &HashMap<LinkKind, AssociationClient> {
        &self.kinds
    }

    fn client(&self, kind: LinkKind) -> Result<&AssociationClient> {
        self.kinds.get(&kind).ok_or(LinkingError::KindNotConfigured { kind })
    }

    pub async fn begin(&self, actor: &Actor, request: BeginRequest<'_>, now: DateTime<Utc>) -> Result<Begun> {
        let client = self.client(request.kind)?;
        let authorization = client.authorize(request.redirect_uri, request.login_hint)?;
        let flow = Flow {
            kind: request.kind,
            owner: actor.key.clone(),
            owner_upn: actor.upn.clone(),
            redirect_uri: request.redirect_uri.to_owned(),
            pkce_verifier: authorization.pkce_verifier,
            nonce: authorization.nonce,
            mode: request.mode,
            created_at: now,
            expires_at: now + self.flow_ttl,
        };
        let state_hash = StateHash::of(&authorization.state);
        self.store.put_flow(&state_hash, &flow).await?;
        tracing::info!(kind = %request.kind, user = %actor.key, flow = &state_hash.as_str()[..12], "association flow begun");
        Ok(Begun { authorization_url: authorization.url.to_string(), state: authorization.state, expires_at: flow.expires_at })
    }

    pub async fn complete(&self, actor: &Actor, request: CompleteRequest<'_>, now: DateTime<Utc>) -> Result<Link> {
        let state_hash = StateHash::of(request.state);
        let outcome = self.complete_inner(actor, &state_hash, request, now).await;
        let flow = &state_hash.as_str()[..12];
        match &outcome {
            Ok(link) => {
                tracing::info!(target: "audit", action = "link.create", outcome = "ok", user = %actor.key, kind = %link.kind, link_id = link.id.as_str(), personal = %link.personal, flow, "link recorded")
            }
            Err(e) => {
                tracing::info!(target: "audit", action = "link.create", outcome = "refused", user = %actor.key, flow, reason = %e, "link refused")
            }
        }
        outcome
    }

    async fn complete_inner(
        &self,
        actor: &Actor,
        state_hash: &StateHash,
        request: CompleteRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Link> {
        // Consumed on the first attempt, whatever its outcome (invariant 5).
        let flow = self.store.take_flow(state_hash).await?.ok_or(DomainError::FlowNotFound)?;
        flow.check_completion(&actor.key, now)?;
        if request.redirect_uri.is_some_and(|r| r != flow.redirect_uri) {
            return Err(LinkingError::RedirectUriMismatch);
        }
        if let Some(error) = request.error {
            // The provider said no: never call its token endpoint.
            return Err(LinkingError::SignInFailed { cancelled: error == "access_denied" });
        }
        let client = self.client(flow.kind)?;
        let personal = client
            .complete(Callback { code: request.code, iss: request.iss }, &flow.redirect_uri, &flow.pkce_verifier, &flow.nonce, now)
            .await?;
        let new = NewLink {
            kind: flow.kind,
            work: actor.key.clone(),
            work_upn: actor.upn.clone(),
            personal: personal.key,
            personal_sub: personal.subject,
            profile: personal.profile,
        };
        Ok(self.store.link(new, flow.mode, now).await?)
    }

    pub async fn links_of(&self, user: &AccountKey) -> Result<Vec<Link>> {
        Ok(self.store.active_links(user).await?)
    }

    pub async fn remove(&self, actor: &Actor, kind: LinkKind, owner: &AccountKey, reason: &str, now: DateTime<Utc>) -> Result<Link> {
        let outcome = self.store.remove(kind, owner, &actor.key, reason, now).await;
        match &outcome {
            Ok(t) => {
                tracing::info!(target: "audit", action = "link.remove", outcome = "ok", user = %actor.key, owner = %owner, kind = %kind, link_id = t.id.as_str(), "link removed")
            }
            Err(e) => {
                tracing::info!(target: "audit", action = "link.remove", outcome = "refused", user = %actor.key, owner = %owner, kind = %kind, reason = %e, "removal refused")
            }
        }
        Ok(outcome?)
    }

    /// Deletes expired flows (run periodically).
    pub async fn purge_expired_flows(&self, now: DateTime<Utc>) -> Result<usize> {
        Ok(self.store.purge_expired_flows(now).await?)
    }
}
