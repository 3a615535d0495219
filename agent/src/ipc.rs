//! The local API between the CLI verbs and the running agent: a unix socket (mode 0600, root
//! only), one JSON request line from the CLI, then JSON reply lines from the agent, the last of
//! which is final (`ok` or `error`); `up` may send `authUrl` lines before it.

use serde::{Deserialize, Serialize};

/// Where `tinytail run` listens unless `--socket` says otherwise (tailscaled uses
/// /var/run/tailscale/tailscaled.sock).
pub const DEFAULT_SOCKET: &str = "/var/run/tinytail/tinytail.sock";

/// A request from the CLI.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Up(UpArgs),
    Down,
    Status,
    Logout,
    /// `tinytail web setup-code`: a one-time code to set the web page's admin password.
    #[serde(rename = "web-setup-code")]
    WebSetupCode,
    /// `tinytail ping`: one disco ping to a peer (name, FQDN or tailnet IP).
    Ping {
        target: String,
        timeout_ms: u64,
    },
    /// `tinytail netcheck`: UDP, our address as STUN sees it, DERP region latencies.
    Netcheck,
    /// `tinytail lock VERB`: tailnet lock (status, log, sign, add, remove, init, disable,
    /// local-disable, disablement-kdf).
    Lock(LockArgs),
    /// `tinytail cert`: a certificate for one of our names, or its status.
    Cert(CertArgs),
}

/// `tinytail cert`'s flags (the files are the CLI's business).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CertArgs {
    /// The name; `None` asks only for the usage hint (the names we may ask for).
    pub domain: Option<String>,
    /// `--min-validity`: renew first if less than this remains (seconds; 0 = any valid one).
    pub min_validity_secs: u64,
    /// `--status`: report, never issue.
    pub status: bool,
    /// `--dns-hook PATH`: publish DNS-01 records with this executable from now on ("" = stop
    /// using one, back to control's set-dns).
    pub dns_hook: Option<String>,
}

/// A `lock` verb with its flags (name, value as given) and arguments. Disablement secrets may
/// be among the arguments: like auth keys they cross the root-only socket and are never logged.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LockArgs {
    pub verb: String,
    pub flags: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl LockArgs {
    /// The last value given for a flag.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for LockArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockArgs")
            .field("verb", &self.verb)
            .field("args", &self.args.len())
            .finish_non_exhaustive()
    }
}

/// `tinytail up`'s flags; `None` = not given = keep the current pref.
#[derive(Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct UpArgs {
    pub login_server: Option<String>,
    /// The secret itself: it crosses the root-only socket once and is never stored or logged.
    pub auth_key: Option<String>,
    pub hostname: Option<String>,
    pub advertise_routes: Option<Vec<String>>,
    pub advertise_exit_node: Option<bool>,
    pub snat_subnet_routes: Option<bool>,
    pub accept_routes: Option<bool>,
    /// How long to wait for the node to come up (seconds); 0 = forever.
    pub timeout_secs: u64,
}

impl std::fmt::Debug for UpArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpArgs")
            .field("login_server", &self.login_server)
            .field("auth_key", &self.auth_key.as_deref().map(tinytail_core::key::Redacted))
            .field("hostname", &self.hostname)
            .field("advertise_routes", &self.advertise_routes)
            .finish_non_exhaustive()
    }
}

/// One reply line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reply {
    /// Interactive login: visit this URL (not final).
    AuthUrl(String),
    /// A step of long work, for the user (not final).
    Progress(String),
    /// Done; a message for the user and, for `status`, the status object.
    Ok { message: String, data: serde_json::Value },
    /// Failed, one line.
    Error(String),
}
