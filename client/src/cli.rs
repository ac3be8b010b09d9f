//! The command line: every command, flag and its help.

use clap::{Args, Parser, Subcommand};

/// The link kinds as the command line names them.
const KINDS: [&str; 4] = ["partner-university", "microsoft-learning", "pu", "ml"];
use idlink_client::browser;

use crate::commands::bench;

#[derive(Parser)]
#[command(name = "idlink", about = "Link work accounts to personal Microsoft accounts through idlink.")]
pub(crate) struct Cli {
    /// The idlink gRPC endpoint.
    #[arg(long, global = true, env = "IDLINK_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    pub(crate) endpoint: String,
    /// The CA certificate(s), PEM, that an https:// endpoint's certificate chains to (default:
    /// the public web roots).
    #[arg(long, global = true, env = "IDLINK_CA_FILE")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// A client certificate chain, PEM, for a server that requires one (mTLS).
    #[arg(long, global = true, env = "IDLINK_CLIENT_CERT", requires = "client_key")]
    pub(crate) client_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key, PEM.
    #[arg(long, global = true, env = "IDLINK_CLIENT_KEY", requires = "client_cert")]
    pub(crate) client_key: Option<std::path::PathBuf>,
    /// A bearer access token for idlink.
    #[arg(long, global = true, env = "IDLINK_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Unattended jobs: the OpenID authority whose token endpoint issues this app's tokens
    /// (e.g. https://login.microsoftonline.com/TENANT_ID/v2.0). The client secret comes from
    /// IDLINK_CLIENT_SECRET or --client-secret-file, never a flag.
    #[arg(long, global = true, env = "IDLINK_AUTHORITY", requires = "client_id", conflicts_with = "token")]
    pub(crate) authority: Option<String>,
    /// Unattended jobs: the app's client id.
    #[arg(long, global = true, env = "IDLINK_CLIENT_ID", requires = "authority")]
    pub(crate) client_id: Option<String>,
    /// Unattended jobs: a file holding the client secret (e.g. a mounted Secret).
    #[arg(long, global = true, env = "IDLINK_CLIENT_SECRET_FILE")]
    pub(crate) client_secret_file: Option<std::path::PathBuf>,
    /// Unattended jobs: the scope asked for.
    #[arg(long, global = true, env = "IDLINK_SCOPE", default_value = "api://idlink/.default")]
    pub(crate) scope: String,
    /// How long to keep retrying calls refused UNAVAILABLE or RESOURCE_EXHAUSTED (0: never).
    /// Mutations are retried safely: each carries a request id.
    #[arg(long, global = true, env = "IDLINK_RETRY_SECONDS", default_value_t = 60.0)]
    pub(crate) retry_seconds: f64,
    /// The request id of the mutation this command sends (default: a new one per mutation):
    /// rerunning with the same id answers the first outcome instead of acting twice.
    #[arg(long, global = true)]
    pub(crate) request_id: Option<String>,
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
    /// Enrolment: deleted work accounts.
    #[command(subcommand)]
    Enrolment(EnrolmentCommand),
    /// Achievements: yours (`mine`), or the Learning feed's certifications import.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// The Learning feed: Learning profiles (MCIDs).
    #[command(subcommand)]
    LearningFeed(LearningFeedCommand),
    /// Organisations' certification credit.
    #[command(subcommand)]
    Credit(CreditCommand),
    /// Reports for organisation admins and the credit job.
    #[command(subcommand)]
    Report(ReportCommand),
    /// The change feed.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Shell completions for bash, zsh, fish, elvish or powershell, on standard output.
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
    /// The manual page (roff), on standard output: `idlink man | man -l -`.
    Man,
    /// Health of the server; with --wait, polls until SERVING and prints how long that took.
    Health {
        /// Poll until SERVING instead of asking once.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long.
        #[arg(long, default_value_t = 30.0)]
        timeout_seconds: f64,
    },
    /// Load generator: requests/s and latency percentiles of one RPC at each concurrency.
    Bench {
        /// What to load.
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
        /// Instead of timing a window: exactly this many calls in all, every one counted (for
        /// counting the server's instructions per call).
        #[arg(long, conflicts_with = "seconds")]
        requests: Option<u64>,
        /// For `resolve`: the personal account's object id (consumer tenant).
        #[arg(long)]
        object_id: Option<String>,
        /// For `org-credit`: the organisation's PartnerID.
        #[arg(long)]
        partner_id: Option<String>,
    },
    /// Services: the work user a personal account is linked to.
    Resolve {
        /// Which link: partner-university (pu) or microsoft-learning (ml).
        #[arg(long, value_parser = KINDS)]
        kind: String,
        /// The personal account's object id (consumer tenant).
        #[arg(long)]
        object_id: String,
        /// The tenant id (a GUID).
        #[arg(long, default_value = "9188040d-6c67-4c5b-b112-36a304b66dad")]
        tenant_id: String,
    },
    /// Runs a whole flow against `idlinkd --dev`: begin, sign in, complete, list, remove.
    Demo {
        /// The development work user who links.
        #[arg(long, default_value = "alex@contoso.example")]
        work_user: String,
        /// The personal account that signs in. Unset: a new one added to the development
        /// provider for this run, so the demo can be run again and again under the limit on
        /// associations (which a fixture account such as jordan@outlook.example soon meets).
        #[arg(long)]
        personal: Option<String>,
        /// Which link: partner-university (pu) or microsoft-learning (ml).
        #[arg(long, default_value = "microsoft-learning", value_parser = KINDS)]
        kind: String,
        /// Where the provider sends the browser back (registered for the kind).
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
        /// The tenant id (a GUID).
        #[arg(long)]
        tenant_id: String,
        /// The organisation's PartnerID.
        #[arg(long)]
        partner_id: String,
        /// The organisation's name, for people.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum CertsCommand {
    /// Send a CSV (personal_tenant_id,personal_object_id,certification_id,earned_at,expires_at,
    /// and optionally source: microsoft-learning, the default, or partner-university) or
    /// JSON-lines (.jsonl) file, or `-` for standard input, in calls of --batch-lines lines
    /// (Certifications.Write). Safe to rerun: duplicates are counted.
    Import(ImportArgs),
    /// Your own achievements (signed in as a work user): what each credits to your
    /// organisation, or why it does not, and your MCID.
    Mine,
}

#[derive(Subcommand)]
pub(crate) enum EnrolmentCommand {
    /// Work users.
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Subcommand)]
pub(crate) enum UsersCommand {
    /// A deleted work account (a leaver): tombstones its links, so its exams stop counting and
    /// its personal accounts may link again (an admin of its tenant, or Organizations.Write).
    /// One user, or a --file (CSV with tenant_id and object_id columns, or JSON lines) with a
    /// progress line; rerunnable.
    Remove {
        /// The tenant id (a GUID).
        #[arg(long, requires = "object_id", conflicts_with = "file")]
        tenant_id: Option<String>,
        /// The object id (a GUID).
        #[arg(long, requires = "tenant_id")]
        object_id: Option<String>,
        /// The file to read (`-`: standard input); CSV with a header, or JSON lines (.jsonl or --jsonl).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Read standard input (`--file -`) as JSON lines.
        #[arg(long)]
        jsonl: bool,
        /// For the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum ReportCommand {
    /// The skills report: per work user of the organisation (every tenant of it), whether they
    /// are associated for Partner University and Microsoft Learning, their MCID, and per area
    /// the achievements that count — one row per person and area. Streams page by page.
    Skills {
        /// One of the organisation's tenant ids, or its PartnerID (digits).
        #[arg(long)]
        org: String,
        /// Write CSV here (`-` for standard output) instead of a table.
        #[arg(long)]
        csv: Option<std::path::PathBuf>,
        /// People per call.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..=500))]
        page_size: i32,
    },
}

#[derive(Subcommand)]
pub(crate) enum LearningFeedCommand {
    /// Learning profiles.
    #[command(subcommand)]
    Profiles(ProfilesCommand),
}

#[derive(Subcommand)]
pub(crate) enum ProfilesCommand {
    /// Send a CSV file whose header names its columns (personal_object_id, mcid, and
    /// optionally personal_tenant_id) or a JSON-lines file ({"personal_account": {"object_id":
    /// …}, "mcid": …}), or `-` for standard input (Certifications.Write). Safe to rerun.
    Import(ImportArgs),
}

/// A file the Learning feed sends, in calls of --batch-lines lines.
#[derive(Args)]
pub(crate) struct ImportArgs {
    /// The file to send (`-`: standard input): CSV with a header naming its columns, or JSON
    /// lines (`.jsonl`, or `--jsonl`).
    pub(crate) file: std::path::PathBuf,
    /// Read standard input as JSON lines (a file is JSON lines when it ends .jsonl/.ndjson/.json).
    #[arg(long)]
    pub(crate) jsonl: bool,
    /// Lines per call: each call is retried alone, and sent with a fresh token.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) batch_lines: u32,
}

#[derive(Subcommand)]
pub(crate) enum CreditCommand {
    /// An organisation's credit per competency area.
    Show {
        /// The organisation, by one of its tenants' ids.
        organization_id: String,
    },
    /// Recompute from the source records and repair drift (Credits.Recalculate).
    Recalc {
        /// Every organisation.
        #[arg(long, conflicts_with = "org")]
        all: bool,
        /// Recalculate only these organisations (tenant ids; repeat --org for several).
        #[arg(long)]
        org: Vec<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum EventsCommand {
    /// Follow the change feed (Links.Read). Reconnects when the server restarts, from the last
    /// cursor printed; to resume later, pass that cursor as --from.
    Watch {
        /// Resume after this cursor (0: from the oldest event kept).
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
        /// The `state` the redirect carried.
        #[arg(long, required_unless_present = "callback_url")]
        state: Option<String>,
        /// The `code` the redirect carried.
        #[arg(long)]
        code: Option<String>,
        /// The `iss` the redirect carried (RFC 9207), when it had one.
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
        /// Only links of this kind: partner-university (pu) or microsoft-learning (ml).
        #[arg(long, requires = "org", value_parser = KINDS)]
        kind: Option<String>,
        /// List removed links (tombstones) too.
        #[arg(long, requires = "org")]
        include_removed: bool,
    },
    /// Remove access (idempotent); admins may name a user of their organisation.
    Remove {
        /// Which link: partner-university (pu) or microsoft-learning (ml).
        #[arg(long, value_parser = KINDS)]
        kind: String,
        /// TENANT_ID/OBJECT_ID of the user whose access to remove (admins).
        #[arg(long)]
        of: Option<String>,
        /// Why, for the audit log.
        #[arg(long, default_value = "user_request")]
        reason: String,
        /// Remove only if the link still has this etag (from `link list --json`): FAILED_PRECONDITION
        /// ETAG_MISMATCH when it changed since.
        #[arg(long)]
        etag: Option<String>,
    },
}

#[derive(Args)]
pub(crate) struct BeginArgs {
    /// Which link: partner-university (pu) or microsoft-learning (ml).
    #[arg(long, value_parser = KINDS)]
    pub(crate) kind: String,
    /// Where the provider sends the browser back (registered for the kind).
    #[arg(long, default_value = browser::DEV_REDIRECT_URI)]
    pub(crate) redirect_uri: String,
    /// The personal account to sign in with (skips the provider's account picker).
    #[arg(long)]
    pub(crate) login_hint: Option<String>,
    /// Replace the personal account you already linked for this kind.
    #[arg(long)]
    pub(crate) replace_existing: bool,
    /// Move an account linked at another organisation to you (kinds that refuse by default).
    #[arg(long)]
    pub(crate) transfer: bool,
}

#[cfg(test)]
mod tests {
    /// Every option of every command says what it is for (`--help`, the man page, completions).
    #[test]
    fn every_option_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&<super::Cli as clap::CommandFactory>::command(), "idlink", &mut missing);
        assert!(missing.is_empty(), "options without help: {missing:#?}");
    }
}
