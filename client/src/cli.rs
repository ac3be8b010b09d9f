//! The command line: every command, flag and its help.

use clap::{Args, Parser, Subcommand};
use idlink_client::browser;

use crate::commands::bench;

#[derive(Parser)]
#[command(name = "idlink", about = "Link work accounts to personal Microsoft accounts through idlink.")]
pub(crate) struct Cli {
    /// The idlink gRPC endpoint.
    #[arg(long, global = true, env = "IDLINK_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    pub(crate) endpoint: String,
    /// A bearer access token for idlink.
    #[arg(long, global = true, env = "IDLINK_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Development: get a token for this fixture user from the development provider.
    #[arg(long, global = true)]
    pub(crate) user: Option<String>,
    /// Development: get a token for this fixture app (partner-university, learning-feed, …).
    #[arg(long = "as-app", global = true, conflicts_with = "user")]
    pub(crate) as_app: Option<String>,
    /// Development: the development identity provider.
    #[arg(long, global = true, env = "IDLINK_DEV_IDP", default_value = "http://127.0.0.1:50052")]
    pub(crate) idp: String,
    /// Preferred language of error messages (accept-language), e.g. fr or ko.
    #[arg(long, global = true)]
    pub(crate) lang: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Development: print an access token of a fixture work user (--user) or app (--app).
    Token {
        /// A fixture app: partner-university, learning-feed, credit-recalculation, enrolment, no-roles.
        #[arg(long, conflicts_with = "user")]
        app: Option<String>,
    },
    /// Manage links (yours, or as an admin or service, an organisation's).
    #[command(subcommand, alias = "links")]
    Link(LinkCommand),
    /// Enrolment: organisations and their PartnerIDs.
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// The Learning feed: certifications.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Organisations' certification credit.
    #[command(subcommand)]
    Credit(CreditCommand),
    /// The change feed.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Health of the server; with --wait, polls until SERVING and prints how long that took.
    Health {
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 30.0)]
        timeout_seconds: f64,
    },
    /// Load generator: requests/s and latency percentiles of one RPC at each concurrency.
    Bench {
        #[arg(value_enum)]
        target: bench::Target,
        /// Comma-separated concurrency levels.
        #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
        concurrency: Vec<usize>,
        /// HTTP/2 connections shared by the concurrent callers.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Seconds per concurrency level.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// For `resolve`: the personal account's object id (consumer tenant).
        #[arg(long)]
        object_id: Option<String>,
    },
    /// Services: the work user a personal account is linked to.
    Resolve {
        #[arg(long)]
        kind: String,
        /// The personal account's object id (consumer tenant).
        #[arg(long)]
        object_id: String,
        #[arg(long, default_value = "9188040d-6c67-4c5b-b112-36a304b66dad")]
        tenant_id: String,
    },
    /// Runs a whole flow against `idlinkd --dev`: begin, sign in, complete, list, remove.
    Demo {
        #[arg(long, default_value = "alex@contoso.example")]
        work_user: String,
        #[arg(long, default_value = "jordan@outlook.example")]
        personal: String,
        #[arg(long, default_value = "microsoft-learning")]
        kind: String,
        #[arg(long, default_value = browser::DEV_REDIRECT_URI)]
        redirect_uri: String,
        /// Stop after listing: keep the link.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum OrgsCommand {
    /// Create or update a tenant's organisation (Organizations.Write).
    Upsert {
        #[arg(long)]
        tenant_id: String,
        #[arg(long)]
        partner_id: String,
        #[arg(long)]
        name: String,
        /// Idempotency key: safe to rerun.
        #[arg(long, default_value = "")]
        request_id: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum CertsCommand {
    /// Stream a CSV (personal_tenant_id,personal_object_id,certification_id,earned_at,expires_at)
    /// or JSON-lines (.jsonl) file (Certifications.Write). Safe to rerun: duplicates are counted.
    Import { file: std::path::PathBuf },
}

#[derive(Subcommand)]
pub(crate) enum CreditCommand {
    /// An organisation's credit per competency area.
    Show { organization_id: String },
    /// Recompute from the source records and repair drift (Credits.Recalculate).
    Recalc {
        /// Every organisation.
        #[arg(long, conflicts_with = "org")]
        all: bool,
        #[arg(long)]
        org: Vec<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum EventsCommand {
    /// Follow the change feed (Links.Read); resume with the last cursor printed.
    Watch {
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Subcommand)]
pub(crate) enum LinkCommand {
    /// Start linking: prints the URL to open and the state.
    Begin(BeginArgs),
    /// Finish linking with what the redirect carried (or the whole redirect URL).
    Complete {
        #[arg(long, required_unless_present = "callback_url")]
        state: Option<String>,
        #[arg(long)]
        code: Option<String>,
        #[arg(long)]
        iss: Option<String>,
        /// The full URL the browser was redirected to.
        #[arg(long)]
        callback_url: Option<String>,
    },
    /// Your active links; with --org, an organisation's (admins, services).
    List {
        /// The organisation (its tenant id).
        #[arg(long)]
        org: Option<String>,
        /// Another user's links (admins): TENANT_ID/OBJECT_ID.
        #[arg(long, conflicts_with = "org")]
        of: Option<String>,
        #[arg(long, requires = "org")]
        kind: Option<String>,
        #[arg(long, requires = "org")]
        include_removed: bool,
    },
    /// Remove access (idempotent); admins may name a user of their organisation.
    Remove {
        #[arg(long)]
        kind: String,
        /// TENANT_ID/OBJECT_ID of the user whose access to remove (admins).
        #[arg(long)]
        of: Option<String>,
        #[arg(long, default_value = "user_request")]
        reason: String,
    },
}

#[derive(Args)]
pub(crate) struct BeginArgs {
    #[arg(long)]
    pub(crate) kind: String,
    #[arg(long, default_value = browser::DEV_REDIRECT_URI)]
    pub(crate) redirect_uri: String,
    #[arg(long)]
    pub(crate) login_hint: Option<String>,
    #[arg(long)]
    pub(crate) replace_existing: bool,
    #[arg(long)]
    pub(crate) transfer: bool,
}
