//! Getting and keeping HTTPS certificates (issue #15): `tinytail cert` worded as `tailscale
//! cert`, the renewal task, and the status answers (CLI, `status --json`, control's c2n
//! `/tls-cert-status`). What a certificate's status is and when it is due is [`crate::cert`].
//!
//! The DNS-01 record goes through control's `/machine/set-dns`, or, for control servers that
//! cannot publish records (Headscale answers 501), through a `--dns-hook` executable the user
//! points at their DNS provider. An issuance is stored in one transaction only after the new
//! chain checked Valid; until then the old certificate stays served.
//!
//! Secrets: the certificate key leaves the agent only in the reply to the CLI that asked (to
//! write its key file); the ACME account key never leaves the store.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;

use tinytail_core::control::CAPABILITY_VERSION;
use tinytail_core::key::NodePublic;
use tinytail_hal::store::ConfigKey;

use crate::cert::acme::{self, Publish};
use crate::cert::{self, x509, CertStatus, CT_NOTICE};
use crate::control::session::Session;
use crate::control::transport;
use crate::ipc::{CertArgs, Reply};
use crate::log::log;
use crate::shared::{Agent, Backend};
use crate::tailcfg::SetDnsRequest;
use crate::{clock, random};

/// How often the renewal task looks at the stored certificates (cheap: a store read and a
/// few comparisons; Pebble's 5-minute certificates in the tests need seconds, not hours).
const RENEWAL_TICK: Duration = Duration::from_secs(5);
/// How long the CA's renewal information may take before we schedule by the lifetime.
const ARI_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a `--dns-hook` call may take (a DNS provider's API, and maybe its propagation).
const HOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// The line a control server without `/machine/set-dns` gets (Headscale answers 501).
const NO_SET_DNS: &str = "this control server cannot publish ACME DNS records; \
     use --dns-hook PATH to publish them with your DNS provider";

/// `tinytail cert` from the CLI. `notes` gets progress lines while a certificate is issued.
pub(crate) async fn handle(agent: &Agent, args: CertArgs, notes: Option<&UnboundedSender<Reply>>) -> Reply {
    if let Some(hook) = &args.dns_hook {
        if let Err(e) = set_dns_hook(agent, hook) {
            return Reply::Error(e);
        }
        if args.domain.is_none() && !args.status {
            let message = if hook.is_empty() {
                "DNS hook removed; DNS-01 records go through the control server".to_string()
            } else {
                format!("DNS hook set to {hook}")
            };
            return Reply::Ok { message, data: serde_json::Value::Null };
        }
    }
    if args.status {
        return status_reply(agent, args.domain.as_deref());
    }
    let Some(given) = args.domain else { return Reply::Error(usage(agent)) };
    let domain = match allowed_domain(agent, &given) {
        Ok(d) => d,
        Err(e) => return Reply::Error(e),
    };
    // With the clock not set the stored certificate's dates are unknown: it is handed out if it
    // is otherwise valid (no CA would issue to us anyway: TLS to it fails).
    let now = clock::sane_now();
    let directory = acme::directory_url();
    let checked = cert::stored_status(&agent.store, &domain, now, roots(agent, &directory).as_ref());
    let fresh_enough = match (&checked.status, &checked.leaf) {
        (CertStatus::Valid, Some(leaf)) => {
            now.is_none_or(|now| leaf.not_after - now >= args.min_validity_secs as i64)
        }
        _ => false,
    };
    if !fresh_enough {
        let say = |line: &str| {
            if let Some(n) = notes {
                let _ = n.send(Reply::Progress(line.to_string()));
            }
        };
        if checked.status == CertStatus::Missing {
            say(CT_NOTICE);
        }
        if let Err(e) = obtain(agent, &domain, &say).await {
            // Status shows why; the renewal schedule (and its backoff) is left as it was.
            agent.lock().certs.renewal.entry(domain.clone()).or_default().last_error = Some(e.clone());
            return Reply::Error(e);
        }
    }
    match agent.store.certificate(&domain) {
        Some((chain, key)) => Reply::Ok {
            message: String::new(),
            data: serde_json::json!({
                "Domain": domain,
                "CertPEM": String::from_utf8_lossy(&chain),
                "KeyPEM": x509::key_pem(&key),
            }),
        },
        None => Reply::Error(format!("no certificate stored for {domain}")),
    }
}

/// The usage error `tailscale cert` gives without a domain, with its hint.
fn usage(agent: &Agent) -> String {
    let (running, domains) = {
        let s = agent.lock();
        (s.backend == Backend::Running, s.netmap.cert_domains.clone())
    };
    let hint = if !running {
        "Tailscale is not running.".to_string()
    } else if domains.is_empty() {
        "HTTPS cert support is not enabled/configured for your tailnet.".to_string()
    } else if domains.len() == 1 {
        format!("For domain, use {:?}.", domains[0])
    } else {
        format!("Valid domain options: {}.", go_quoted(&domains))
    };
    format!("Usage: tinytail cert [flags] <domain>\n{hint}")
}

/// A list as Go's `%q` prints a `[]string`: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    format!("[{}]", list.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>().join(" "))
}

/// The name to issue for, if this node may: one of control's CertDomains, or, with a DNS hook
/// (the user's own DNS) or a control server that sends none (Headscale), any valid name.
fn allowed_domain(agent: &Agent, given: &str) -> Result<String, String> {
    let domain = cert::normalize_domain(given).ok_or_else(|| "invalid domain".to_string())?;
    let (running, domains) = {
        let s = agent.lock();
        (s.backend == Backend::Running, s.netmap.cert_domains.clone())
    };
    if dns_hook(agent).is_some() {
        return Ok(domain);
    }
    if !running {
        return Err("Tailscale is not running.".into());
    }
    if domains.is_empty() || domains.contains(&domain) {
        // With no CertDomains the control server's answer to set-dns decides: Headscale's 501
        // becomes NO_SET_DNS, Tailscale's refusal the "does not support" line.
        return Ok(domain);
    }
    Err(format!("invalid domain {domain:?}; must be one of {}", go_quoted(&domains)))
}

fn dns_hook(agent: &Agent) -> Option<String> {
    agent
        .store
        .get_config(ConfigKey::DnsHook)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .filter(|p| !p.is_empty())
}

/// Stores (or with "" removes) the DNS hook after checking it is an executable file.
fn set_dns_hook(agent: &Agent, path: &str) -> Result<(), String> {
    if !path.is_empty() {
        use std::os::unix::fs::PermissionsExt;
        if !path.starts_with('/') {
            return Err(format!("--dns-hook {path:?}: give an absolute path"));
        }
        let meta = std::fs::metadata(path).map_err(|e| format!("--dns-hook {path}: {e}"))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(format!("--dns-hook {path}: not an executable file"));
        }
    }
    let value = (!path.is_empty()).then_some(path.as_bytes());
    agent.store.put_config(ConfigKey::DnsHook, value)
}

/// The roots a stored chain must reach: the board's for Let's Encrypt; none for another CA
/// (Pebble, a private CA), whose chain is then checked only for being well signed, as
/// tailscaled tolerates an unknown authority for a non-default directory.
fn roots(agent: &Agent, directory: &str) -> Option<rustls::RootCertStore> {
    if directory != acme::DEFAULT_DIRECTORY {
        return None;
    }
    transport::root_store(agent.ca_bundle).ok()
}

/// Issues a certificate for `domain`, checks it, stores it with its key (and a new account) in
/// one transaction, serves it and restarts its renewal schedule.
async fn obtain(agent: &Agent, domain: &str, say: &(dyn Fn(&str) + Sync)) -> Result<(), String> {
    let _one_at_a_time = agent.cert_issuing.lock().await;
    let directory = acme::directory_url();
    let now = clock::unix_now();
    let limited = directory == acme::DEFAULT_DIRECTORY
        && !agent.lock().certs.renewal.get(domain).is_none_or(|r| r.within_duplicate_limit(now));
    if limited {
        return Err(format!(
            "{domain} already got {} certificates in 7 days (the CA's duplicate limit); try later",
            cert::DUPLICATE_LIMIT
        ));
    }
    let tls = transport::tls_config(agent.ca_bundle)?;
    let http = acme::Http::new(tls);
    let account = agent.store.acme_account();
    let issued = match dns_hook(agent) {
        Some(path) => {
            say(&format!("publishing DNS-01 records with the hook {path}"));
            let hook = Hook { path, say };
            acme::issue(http, &directory, account.as_deref(), domain, &hook, say).await
        }
        None => {
            let (session, node_key) = {
                let s = agent.lock();
                let key = s
                    .state
                    .node_key
                    .as_ref()
                    .map(|k| NodePublic(tinytail_core::control::noise::public_key(k)));
                (s.session.clone(), key)
            };
            let (Some(session), Some(node_key)) = (session, node_key) else {
                return Err("Tailscale is not running.".into());
            };
            let control = Control { session, node_key: node_key.to_string() };
            acme::issue(http, &directory, account.as_deref(), domain, &control, say).await
        }
    }
    .map_err(|e| e.to_string())?;
    let chain = issued.chain_pem.as_bytes();
    let checked = x509::check_at(
        chain,
        &issued.key_pkcs8,
        domain,
        clock::sane_now(),
        roots(agent, &directory).as_ref(),
    );
    match &checked.status {
        CertStatus::Valid => {}
        CertStatus::Invalid(why) => {
            return Err(format!("the CA's certificate for {domain} is unusable: {why}"))
        }
        other => return Err(format!("the CA's certificate for {domain}: {}", other.label())),
    }
    agent.store.save_issuance(issued.new_account.as_deref(), domain, chain, &issued.key_pkcs8)?;
    let served = cert::served_key(chain, &issued.key_pkcs8);
    {
        let mut s = agent.lock();
        if let Ok(key) = served {
            s.certs.served.insert(domain.to_string(), key);
        }
        s.certs.renewal.entry(domain.to_string()).or_default().succeeded(clock::unix_now());
    }
    agent.notify();
    let until = checked.leaf.map(|l| clock::rfc3339(l.not_after)).unwrap_or_default();
    log(&format!("cert: got a certificate for {domain}, valid until {until}"));
    Ok(())
}

/// Control publishes the record (`POST /machine/set-dns`).
struct Control {
    session: Session,
    node_key: String,
}

impl Publish for Control {
    async fn set(&self, name: &str, value: &str) -> Result<(), String> {
        let req = SetDnsRequest {
            version: CAPABILITY_VERSION,
            node_key: self.node_key.clone(),
            name: name.to_string(),
            record_type: "TXT",
            value: value.to_string(),
        };
        match self.session.set_dns(&req).await {
            Ok((200, _)) => Ok(()),
            Ok((501, body)) => Err(format!("{NO_SET_DNS} (set-dns response: 501, {body})")),
            Ok((status, body)) => Err(format!("set-dns response: {status}, {body}")),
            Err(e) => Err(format!("set-dns: {e}")),
        }
    }

    async fn clear(&self, _name: &str, _value: &str) -> Result<(), String> {
        // Control's records expire on their own; tailscaled never clears them either.
        Ok(())
    }
}

/// The user's executable publishes the record: `PATH set NAME VALUE`, `PATH clear NAME VALUE`.
struct Hook<'a> {
    path: String,
    say: &'a (dyn Fn(&str) + Sync),
}

impl Hook<'_> {
    async fn run(&self, verb: &str, name: &str, value: &str) -> Result<(), String> {
        let mut child = tokio::process::Command::new(&self.path)
            .args([verb, name, value])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("DNS hook {}: {e}", self.path))?;
        let mut last_line = String::new();
        let work = async {
            if let Some(stderr) = child.stderr.take() {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    (self.say)(&format!("dns hook: {line}"));
                    last_line = line;
                }
            }
            child.wait().await
        };
        let status = tokio::time::timeout(HOOK_TIMEOUT, work)
            .await
            .map_err(|_| format!("DNS hook {} {verb} took more than {}s", self.path, HOOK_TIMEOUT.as_secs()))?
            .map_err(|e| format!("DNS hook {}: {e}", self.path))?;
        if status.success() {
            Ok(())
        } else {
            let why = if last_line.is_empty() { String::new() } else { format!(": {last_line}") };
            Err(format!("DNS hook {} {verb} failed ({status}){why}", self.path))
        }
    }
}

impl Publish for Hook<'_> {
    async fn set(&self, name: &str, value: &str) -> Result<(), String> {
        self.run("set", name, value).await
    }

    async fn clear(&self, name: &str, value: &str) -> Result<(), String> {
        self.run("clear", name, value).await
    }
}

/// `tinytail cert --status [DOMAIN]`: one name, or every name we may or did get.
fn status_reply(agent: &Agent, domain: Option<&str>) -> Reply {
    let list = match domain {
        Some(d) => match cert::normalize_domain(d) {
            Some(d) => vec![status_of(agent, &d)],
            None => return Reply::Error("invalid domain".into()),
        },
        None => status_list(agent),
    };
    if list.is_empty() {
        return Reply::Error(usage(agent));
    }
    let mut message = String::new();
    for entry in &list {
        message.push_str(&format!(
            "{}: {}",
            entry["Domain"].as_str().unwrap_or(""),
            entry["Status"].as_str().unwrap_or("")
        ));
        for (field, label) in [
            ("Error", "error"),
            ("NotAfter", "valid until"),
            ("RenewAt", "renews at"),
            ("LastError", "last renewal error"),
            ("RetryAt", "retry at"),
        ] {
            if let Some(v) = entry.get(field).and_then(|v| v.as_str()) {
                message.push_str(&format!("\n  {label}: {v}"));
            }
        }
        if entry["Status"] == CertStatus::Missing.label() {
            message.push_str(&format!("\n  {CT_NOTICE}"));
        }
        message.push('\n');
    }
    Reply::Ok { message: message.trim_end().to_string(), data: serde_json::json!(list) }
}

/// Every name's status: control's CertDomains and whatever is stored.
pub(crate) fn status_list(agent: &Agent) -> Vec<serde_json::Value> {
    let mut names = agent.lock().netmap.cert_domains.clone();
    for stored in agent.store.certificate_domains() {
        if !names.contains(&stored) {
            names.push(stored);
        }
    }
    names.iter().map(|d| status_of(agent, d)).collect()
}

fn status_of(agent: &Agent, domain: &str) -> serde_json::Value {
    let roots = roots(agent, &acme::directory_url());
    let checked = cert::stored_status(&agent.store, domain, clock::sane_now(), roots.as_ref());
    let renewal = agent.lock().certs.renewal.get(domain).cloned();
    cert::status_json(domain, &checked, renewal.as_ref())
}

/// Control's c2n `GET /tls-cert-status?domain=NAME` answer (`tailcfg.C2NTLSCertInfo`).
pub(crate) fn c2n_tls_cert_status(agent: &Agent, domain: &str) -> serde_json::Value {
    let roots = roots(agent, &acme::directory_url());
    let checked = cert::stored_status(&agent.store, domain, clock::sane_now(), roots.as_ref());
    cert::c2n_json(&checked)
}

/// Serves the stored certificates that are usable now (at start; issuance updates them). With
/// the clock not set, their dates are not judged: a router without a real-time clock keeps
/// serving its certificate (clients check the dates with their own clocks).
fn load_served(agent: &Agent) {
    let now = clock::sane_now();
    let roots = roots(agent, &acme::directory_url());
    for domain in agent.store.certificate_domains() {
        let checked = cert::stored_status(&agent.store, &domain, now, roots.as_ref());
        if checked.status != CertStatus::Valid {
            log(&format!("cert: stored certificate for {domain}: {}", checked.status.label()));
            continue;
        }
        if let Some((chain, key)) = agent.store.certificate(&domain) {
            match cert::served_key(&chain, &key) {
                Ok(served) => {
                    agent.lock().certs.served.insert(domain, served);
                }
                Err(e) => log(&format!("cert: {domain}: {e}")),
            }
        }
    }
    agent.notify();
}

/// Renews every stored certificate on its own: at the CA's suggested time (ARI) when it has
/// one, else two thirds into its lifetime; failures back off. Runs for the agent's life.
pub(crate) async fn renewal_task(agent: Agent) {
    load_served(&agent);
    loop {
        tokio::time::sleep(RENEWAL_TICK).await;
        for domain in agent.store.certificate_domains() {
            renew_if_due(&agent, &domain).await;
        }
    }
}

async fn renew_if_due(agent: &Agent, domain: &str) {
    // Control publishes records only for its CertDomains; a hook for any name we hold.
    let can_publish = dns_hook(agent).is_some() || {
        let s = agent.lock();
        s.session.is_some()
            && (s.netmap.cert_domains.is_empty() || s.netmap.cert_domains.iter().any(|d| d == domain))
    };
    if !can_publish {
        return;
    }
    // No renewal decision on an unknown date (the clock not set): wait for NTP.
    let Some(now) = clock::sane_now() else { return };
    let directory = acme::directory_url();
    let checked = cert::stored_status(&agent.store, domain, Some(now), roots(agent, &directory).as_ref());
    // An Invalid certificate is the user's to look at (status says why); renewing it blindly
    // could loop into the CA's limits.
    let Some(leaf) =
        checked.leaf.filter(|_| matches!(checked.status, CertStatus::Valid | CertStatus::Expired))
    else {
        return;
    };
    let (due, retry_at) = {
        let s = agent.lock();
        let r = s.certs.renewal.get(domain);
        (r.and_then(|r| r.due), r.and_then(|r| r.retry_at))
    };
    let due = match due {
        Some(due) => due,
        None => {
            let ari = ari_window(agent, &leaf).await;
            let due = cert::renew_at(&leaf, ari, random::below(u64::MAX));
            let mut s = agent.lock();
            let r = s.certs.renewal.entry(domain.to_string()).or_default();
            r.due = Some(due);
            r.from_ari = ari.is_some();
            log(&format!(
                "cert: {domain} renews at {} ({})",
                clock::rfc3339(due),
                if ari.is_some() { "the CA's suggested window" } else { "2/3 of its lifetime" }
            ));
            due
        }
    };
    if now < due || retry_at.is_some_and(|t| now < t) {
        return;
    }
    log(&format!("cert: renewing {domain}"));
    let say = |line: &str| log(&format!("cert: {domain}: {line}"));
    if let Err(e) = obtain(agent, domain, &say).await {
        let rate_limited = e.contains("rateLimited");
        let mut s = agent.lock();
        let r = s.certs.renewal.entry(domain.to_string()).or_default();
        r.failed(clock::unix_now(), &e, rate_limited, leaf.not_after - leaf.not_before);
        log(&format!(
            "cert: renewing {domain} failed ({e}); the current certificate stays in use; retry at {}",
            r.retry_at.map(clock::rfc3339).unwrap_or_default()
        ));
    }
}

/// The CA's suggested renewal window for `leaf`, if it offers ARI and answers in time.
async fn ari_window(agent: &Agent, leaf: &x509::LeafInfo) -> Option<(i64, i64)> {
    let account = agent.store.acme_account()?;
    let tls = transport::tls_config(agent.ca_bundle).ok()?;
    let asked = acme::suggested_renewal(acme::Http::new(tls), &account, leaf);
    match tokio::time::timeout(ARI_TIMEOUT, asked).await {
        Ok(Ok(window)) => window,
        Ok(Err(e)) => {
            log(&format!("cert: renewal information: {e}"));
            None
        }
        Err(_) => None,
    }
}
