//! Typed async client for idlink: endpoint, bearer token, deadlines, and errors that carry
//! the service's stable reason and localized message.

use std::{sync::Arc, time::Duration};

pub use idlink_proto::v1 as pb;

/// The consumer tenant: every personal Microsoft account's `tid`.
pub const CONSUMER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
use pb::{
    credit_service_client::CreditServiceClient, link_service_client::LinkServiceClient,
    organization_service_client::OrganizationServiceClient,
};
use tonic::{
    Request,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};
use tonic_types::StatusExt;

pub mod browser;
mod retry;
mod token;

pub use retry::{RetryPolicy, retryable};
pub use token::{ClientCredentials, TokenProvider, refresh_at};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service refused: `reason` is stable, `message` is for a person, `retry_after`
    /// says when trying again makes sense (rate limits, outages).
    #[error("{code:?} {reason}: {message}")]
    Rpc {
        code: tonic::Code,
        reason: String,
        message: String,
        retry_after: Option<Duration>,
        /// What the refusal names for programs (`ErrorInfo.metadata`), e.g. the field of an
        /// `INVALID_ARGUMENT` or the `next_association_available_at` of an `ASSOCIATION_LIMITED`.
        metadata: std::collections::BTreeMap<String, String>,
    },
    #[error("cannot reach idlink: {0}")]
    Transport(String),
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    /// Whether trying again may succeed: UNAVAILABLE and RESOURCE_EXHAUSTED, and a transport
    /// failure (unreachable, or the connection lost mid-call). Whether it is *safe* is the
    /// caller's to know (see [`RetryPolicy`]).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Rpc { code, .. } => retryable(*code),
            ClientError::Transport(_) => true,
            ClientError::Invalid(_) => false,
        }
    }

    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            ClientError::Rpc { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        let details = status.get_error_details();
        // tonic reports a connection lost mid-call (or a stream cut by a server going away) as
        // UNKNOWN, CANCELLED or — an HTTP/2 reset — INTERNAL ("h2 protocol error"), without the
        // ErrorInfo every idlink refusal carries: no answer came, so it is a transport failure,
        // not a refusal.
        let cut = matches!(status.code(), tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Internal);
        if details.error_info().is_none() && cut {
            let cause = std::error::Error::source(&status).map(|c| format!(": {}", error_chain(c))).unwrap_or_default();
            return ClientError::Transport(format!("{}{cause}", status.message()));
        }
        let reason = details.error_info().map(|i| i.reason.clone()).unwrap_or_default();
        let message = details.localized_message().map(|m| m.message.clone()).unwrap_or_else(|| status.message().to_owned());
        let retry_after = details.retry_info().and_then(|r| r.retry_delay);
        let metadata = details.error_info().map(|i| i.metadata.clone().into_iter().collect()).unwrap_or_default();
        ClientError::Rpc { code: status.code(), reason, message, retry_after, metadata }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// An error and its causes, one line (a TLS failure hides under a transport error).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One attempt at an RPC, as a closure [`IdlinkClient::call`] can run again: a clone of the
/// generated client and a fresh request each time.
macro_rules! rpc {
    ($client:expr, $method:ident, $request:expr) => {
        || {
            let mut client = $client.clone();
            let request = $request;
            async move { client.$method(request).await }
        }
    };
}

/// Adds the bearer token and preferred language to every call.
#[derive(Clone)]
pub struct Credentials {
    token: Option<Arc<dyn TokenProvider>>,
    language: Option<MetadataValue<Ascii>>,
    headers: Vec<(tonic::metadata::AsciiMetadataKey, MetadataValue<Ascii>)>,
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        if let Some(token) = self.token.as_ref().and_then(|p| p.bearer_token()) {
            let value = format!("Bearer {token}").parse().map_err(|_| tonic::Status::unauthenticated("the token is not valid ASCII"))?;
            request.metadata_mut().insert("authorization", value);
        }
        if let Some(value) = &self.language {
            request.metadata_mut().insert("accept-language", value.clone());
        }
        for (key, value) in &self.headers {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Credentials>;

#[derive(Clone)]
pub struct IdlinkClient {
    links: LinkServiceClient<Authed>,
    credits: CreditServiceClient<Authed>,
    organizations: OrganizationServiceClient<Authed>,
    deadline: Duration,
    credentials: Option<Arc<ClientCredentials>>,
    retry: Option<RetryPolicy>,
}

/// TLS for an `https://` endpoint: the public web roots, or this CA's certificate(s); and a
/// client certificate when the server requires one (mTLS).
#[derive(Clone, Default)]
pub struct ClientTls {
    pub ca_pem: Option<Vec<u8>>,
    /// Certificate chain and private key, PEM.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("ca", &self.ca_pem.is_some()).field("identity", &self.identity.is_some()).finish()
    }
}

#[derive(Clone)]
pub struct ClientOptions {
    pub endpoint: String,
    pub tls: ClientTls,
    pub token: Option<Arc<dyn TokenProvider>>,
    /// Client credentials, fetched (again) before calls when due: set with [`Self::client_credentials`].
    pub credentials: Option<Arc<ClientCredentials>>,
    /// Retries of UNAVAILABLE and RESOURCE_EXHAUSTED (reads, and mutations with a request id).
    pub retry: Option<RetryPolicy>,
    pub accept_language: Option<String>,
    /// Extra metadata on every call (e.g. `traceparent`, `x-request-id`).
    pub headers: Vec<(String, String)>,
    /// Per-call deadline (sent as `grpc-timeout`).
    pub deadline: Duration,
}

impl ClientOptions {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls: ClientTls::default(),
            token: None,
            credentials: None,
            retry: None,
            accept_language: None,
            headers: Vec::new(),
            deadline: Duration::from_secs(15),
        }
    }
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }
    /// A fixed bearer token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Arc::new(token.into()));
        self
    }
    /// A bearer token asked for before every call.
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.token = Some(Arc::new(provider));
        self
    }
    /// An unattended job's tokens: fetched before a call when due, and once more when the
    /// server refuses one as UNAUTHENTICATED.
    pub fn client_credentials(mut self, credentials: Arc<ClientCredentials>) -> Self {
        self.token = Some(credentials.clone());
        self.credentials = Some(credentials);
        self
    }
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn accept_language(mut self, language: impl Into<String>) -> Self {
        self.accept_language = Some(language.into());
        self
    }
}

fn ascii(what: &str, value: &str) -> Result<MetadataValue<Ascii>> {
    value.parse().map_err(|_| ClientError::Invalid(format!("{what} is not valid ASCII metadata")))
}

impl IdlinkClient {
    /// A new HTTP/2 connection to `endpoint` (`https://` with the public web roots).
    pub async fn channel(endpoint: &str) -> Result<Channel> {
        Self::channel_with(endpoint, &ClientTls::default()).await
    }

    /// A new HTTP/2 connection to `endpoint`, TLS as `tls` says when it is `https://`.
    pub async fn channel_with(endpoint: &str, tls: &ClientTls) -> Result<Channel> {
        let mut target = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| ClientError::Invalid(format!("endpoint {endpoint}: {e}")))?
            .connect_timeout(Duration::from_secs(5));
        if endpoint.starts_with("https://") {
            let mut config = tonic::transport::ClientTlsConfig::new();
            config = match &tls.ca_pem {
                Some(ca) => config.ca_certificate(tonic::transport::Certificate::from_pem(ca)),
                None => config.with_webpki_roots(),
            };
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            target = target.tls_config(config).map_err(|e| ClientError::Invalid(format!("TLS for {endpoint}: {e}")))?;
        } else if tls.ca_pem.is_some() || tls.identity.is_some() {
            return Err(ClientError::Invalid(format!("{endpoint}: TLS settings need an https:// endpoint")));
        }
        target.connect().await.map_err(|e| ClientError::Transport(format!("{endpoint}: {}", error_chain(&e))))
    }

    pub async fn connect(options: ClientOptions) -> Result<Self> {
        let channel = Self::channel_with(&options.endpoint, &options.tls).await?;
        Self::with_channel(channel, options)
    }

    /// A client on an existing connection (several clients may share one).
    pub fn with_channel(channel: Channel, options: ClientOptions) -> Result<Self> {
        let credentials = Credentials {
            token: options.token.clone(),
            language: options.accept_language.as_deref().map(|l| ascii("language", l)).transpose()?,
            headers: options
                .headers
                .iter()
                .map(|(k, v)| Ok((k.parse().map_err(|_| ClientError::Invalid(format!("header name {k:?}")))?, ascii(k, v)?)))
                .collect::<Result<_>>()?,
        };
        Ok(Self {
            links: LinkServiceClient::with_interceptor(channel.clone(), credentials.clone()),
            credits: CreditServiceClient::with_interceptor(channel.clone(), credentials.clone()),
            organizations: OrganizationServiceClient::with_interceptor(channel, credentials),
            deadline: options.deadline,
            credentials: options.credentials,
            retry: options.retry,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.deadline);
        request
    }

    /// One call, as often as it takes: with a fresh token, once more with a new one when the
    /// server refuses the token, and — when `retry_safe` and a [`RetryPolicy`] is set — again
    /// after UNAVAILABLE or RESOURCE_EXHAUSTED, as long as the policy allows.
    async fn call<T, F, Fut>(&self, retry_safe: bool, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = std::time::Instant::now();
        let (mut retries, mut refreshed) = (0u32, false);
        loop {
            if let Some(credentials) = &self.credentials {
                credentials.ensure_fresh().await?;
            }
            let refusal = match attempt().await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => ClientError::from(status),
            };
            if refusal.code() == Some(tonic::Code::Unauthenticated)
                && !refreshed
                && let Some(credentials) = &self.credentials
            {
                credentials.invalidate();
                refreshed = true;
                continue;
            }
            let Some(policy) = self.retry.filter(|_| retry_safe && refusal.is_transient()) else { return Err(refusal) };
            let retry_after = match &refusal {
                ClientError::Rpc { retry_after, .. } => *retry_after,
                _ => None,
            };
            let delay = policy.delay(retries, retry_after);
            if started.elapsed() + delay > policy.max_total {
                return Err(refusal);
            }
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }

    /// BeginLink; retried only when it carries a `request_id`.
    pub async fn begin_link(&self, request: pb::BeginLinkRequest) -> Result<pb::BeginLinkResponse> {
        let safe = !request.request_id.is_empty();
        self.call(safe, rpc!(self.links, begin_link, self.request(request.clone()))).await
    }

    /// CompleteLink; retried only when it carries a `request_id` (the flow is consumed by the
    /// first attempt: only the id gets its answer again).
    pub async fn complete_link(&self, request: pb::CompleteLinkRequest) -> Result<pb::Link> {
        let safe = !request.request_id.is_empty();
        self.call(safe, rpc!(self.links, complete_link, self.request(request.clone()))).await
    }

    /// The caller's active links.
    pub async fn get_links(&self) -> Result<Vec<pb::Link>> {
        Ok(self.my_links().await?.links)
    }

    /// The caller's active links, and when each kind that limits associations allows their next.
    pub async fn my_links(&self) -> Result<pb::GetLinksResponse> {
        self.call(true, rpc!(self.links, get_links, self.request(pb::GetLinksRequest::default()))).await
    }

    pub async fn get_links_of(&self, user: pb::AccountRef) -> Result<Vec<pb::Link>> {
        let request = pb::GetLinksRequest { user: Some(user) };
        Ok(self.call(true, rpc!(self.links, get_links, self.request(request.clone()))).await?.links)
    }

    /// RemoveLink; retried only when it carries a `request_id`.
    pub async fn remove_link(&self, request: pb::RemoveLinkRequest) -> Result<pb::Link> {
        let safe = !request.request_id.is_empty();
        self.call(safe, rpc!(self.links, remove_link, self.request(request.clone()))).await
    }

    /// One page of an organisation's links (admins, services with Links.Read).
    pub async fn list_links(&self, request: pb::ListLinksRequest) -> Result<pb::ListLinksResponse> {
        self.call(true, rpc!(self.links, list_links, self.request(request.clone()))).await
    }

    /// One page of the skills report (organisation admins, Credits.Recalculate services).
    pub async fn list_organization_people(&self, request: pb::ListOrganizationPeopleRequest) -> Result<pb::ListOrganizationPeopleResponse> {
        self.call(true, rpc!(self.credits, list_organization_people, self.request(request.clone()))).await
    }

    /// Every page of an organisation's links.
    pub async fn list_all_links(&self, mut request: pb::ListLinksRequest) -> Result<Vec<pb::Link>> {
        let mut links = Vec::new();
        loop {
            let page = self.list_links(request.clone()).await?;
            links.extend(page.links);
            if page.next_page_token.is_empty() {
                return Ok(links);
            }
            request.page_token = page.next_page_token;
        }
    }

    /// The change feed from `after_cursor` (no deadline: it streams until dropped). Opening it
    /// is retried; a stream that breaks is the caller's to reopen from its last cursor.
    pub async fn watch_link_events(&self, after_cursor: u64) -> Result<tonic::Streaming<pb::LinkEvent>> {
        self.call(true, rpc!(self.links, watch_link_events, pb::WatchLinkEventsRequest { after_cursor })).await
    }

    /// Streams certifications to the service (no deadline: batches may be long). A stream is
    /// sent once: nothing is retried (see [`Self::record_certification_batch`]).
    pub async fn record_certifications(
        &self,
        certifications: impl tokio_stream::Stream<Item = pb::Certification> + Send + 'static,
    ) -> Result<pb::RecordCertificationsResponse> {
        if let Some(credentials) = &self.credentials {
            credentials.ensure_fresh().await?;
        }
        Ok(self.credits.clone().record_certifications(certifications).await?.into_inner())
    }

    /// Records one batch of certifications in one call, retried like a read: recording is
    /// idempotent (what a first attempt recorded counts as `duplicates` the second time).
    pub async fn record_certification_batch(&self, batch: &[pb::Certification]) -> Result<pb::RecordCertificationsResponse> {
        self.call(true, rpc!(self.credits, record_certifications, tokio_stream::iter(batch.to_vec()))).await
    }

    /// Streams Learning profiles (MCIDs) to the service, as [`Self::record_certifications`].
    pub async fn record_learning_profiles(
        &self,
        profiles: impl tokio_stream::Stream<Item = pb::LearningProfile> + Send + 'static,
    ) -> Result<pb::RecordLearningProfilesResponse> {
        if let Some(credentials) = &self.credentials {
            credentials.ensure_fresh().await?;
        }
        Ok(self.credits.clone().record_learning_profiles(profiles).await?.into_inner())
    }

    /// Records one batch of Learning profiles in one call, retried like a read (idempotent).
    pub async fn record_learning_profile_batch(&self, batch: &[pb::LearningProfile]) -> Result<pb::RecordLearningProfilesResponse> {
        self.call(true, rpc!(self.credits, record_learning_profiles, tokio_stream::iter(batch.to_vec()))).await
    }

    /// The calling work user's own achievements and what each credits.
    pub async fn my_certifications(&self) -> Result<pb::MyCertifications> {
        let request = pb::GetMyCertificationsRequest::default();
        self.call(true, rpc!(self.credits, get_my_certifications, self.request(request.clone()))).await
    }

    /// GetMyCertifications naming whose view the caller expects (anyone but themselves is refused).
    pub async fn my_certifications_as(&self, work_account: pb::AccountRef) -> Result<pb::MyCertifications> {
        let request = pb::GetMyCertificationsRequest { work_account: Some(work_account) };
        self.call(true, rpc!(self.credits, get_my_certifications, self.request(request.clone()))).await
    }

    /// The credit of the organisation of which `organization_id` is a tenant (all its tenants).
    pub async fn organization_credit(&self, organization_id: &str) -> Result<pb::OrganizationCredit> {
        self.organization_credit_of(pb::GetOrganizationCreditRequest { organization_id: organization_id.to_owned(), ..Default::default() })
            .await
    }

    /// GetOrganizationCredit as asked: by tenant id or by PartnerID.
    pub async fn organization_credit_of(&self, request: pb::GetOrganizationCreditRequest) -> Result<pb::OrganizationCredit> {
        self.call(true, rpc!(self.credits, get_organization_credit, self.request(request.clone()))).await
    }

    /// One result per organisation, then a summary (no deadline: a full run takes a while).
    /// Opening it is retried (RECALCULATION_RUNNING asks for a minute): recalculating twice
    /// repairs nothing twice.
    pub async fn recalculate_credits(&self, organization_ids: Vec<String>) -> Result<tonic::Streaming<pb::RecalculateCreditsResponse>> {
        let request = pb::RecalculateCreditsRequest { organization_ids };
        self.call(true, rpc!(self.credits, recalculate_credits, request.clone())).await
    }

    /// UpsertOrganization; retried only when it carries a `request_id`.
    pub async fn upsert_organization(&self, request: pb::UpsertOrganizationRequest) -> Result<pb::Organization> {
        let safe = !request.request_id.is_empty();
        self.call(safe, rpc!(self.organizations, upsert_organization, self.request(request.clone()))).await
    }

    /// RemoveWorkUser (a deleted work account); retried only when it carries a `request_id`.
    pub async fn remove_work_user(&self, request: pb::RemoveWorkUserRequest) -> Result<pb::RemoveWorkUserResponse> {
        let safe = !request.request_id.is_empty();
        self.call(safe, rpc!(self.organizations, remove_work_user, self.request(request.clone()))).await
    }

    /// The work user a personal account is linked to (services with Links.Read).
    pub async fn resolve_personal_account(&self, request: pb::ResolvePersonalAccountRequest) -> Result<pb::ResolvePersonalAccountResponse> {
        self.call(true, rpc!(self.links, resolve_personal_account, self.request(request.clone()))).await
    }
}

/// Parses `partner-university` / `pu` / `microsoft-learning` / `ml` (any case, `_` or `-`).
pub fn parse_kind(raw: &str) -> Result<pb::LinkKind> {
    match raw.to_ascii_lowercase().replace('_', "-").as_str() {
        "pu" | "partner-university" => Ok(pb::LinkKind::PartnerUniversity),
        "ml" | "microsoft-learning" => Ok(pb::LinkKind::MicrosoftLearning),
        other => Err(ClientError::Invalid(format!("unknown kind {other:?}: use partner-university or microsoft-learning"))),
    }
}
