//! Body of the `web_request` fuzz target (agent/fuzz), here so `agent/tests/fuzz_corpus.rs`
//! replays the same code over the committed corpus in every `cargo test`. Not an API.
//!
//! The input is what a LAN client (or a rebinding web site) sends: one or more HTTP requests
//! back to back. Each goes through what a connection does: `http::parse_head`, the body, then
//! [`route`] (Host check, assets, page, sign-in, change forms, `/api/v2`) and the response's
//! encoding. The page has a password, one signed-in session and an API token, all known to the
//! seeds (below), so the fuzzer reaches the handlers behind them. Nothing may panic, and no
//! response may carry the admin password unless its request did.
//!
//! `/tailnet/login` is answered 404 here: it starts a login to whatever server the form names,
//! and a fuzzer must not send traffic anywhere. (Every other change needs a registered node,
//! which the fuzzed agent is not, so nothing else reaches the network: `POST /lock/sign` checks
//! its `node` field and then stops at "log in first"; even past that, `lock sign` needs a control
//! session, which the fuzzed agent never has.)

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::auth::{ApiToken, PasswordHash};
use super::http::{self, Response};
use super::{host, route, Asset, Via, Web, WebConfig, WebState};
use crate::shared::Agent;

/// The admin password of the fuzzed page (one PBKDF2 round, to keep runs fast).
pub const PASSWORD: &str = "fuzz-password-1";
/// The signed-in session's cookie value (`tt_session=`) and CSRF token: hex of these bytes.
pub const SESSION_BYTES: [u8; 32] = [0x11; 32];
pub const CSRF_BYTES: [u8; 32] = [0x22; 32];
/// The API token's random bytes: the bearer token is `tinytail-api-<hex 6>-<hex 26>`.
pub const API_TOKEN_BYTES: [u8; 32] = [0x33; 32];
/// Where the fuzzed page listens; seeds send `Host: 127.0.0.1:8088`.
pub const LISTEN: &str = "127.0.0.1:8088";

/// The agent and runtime, made once per process (the store is a temp file).
struct Harness {
    agent: Agent,
    runtime: tokio::runtime::Runtime,
    config: WebConfig,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

thread_local! {
    static HARNESS: Harness = Harness::new();
}

impl Harness {
    fn new() -> Harness {
        let dir = std::env::temp_dir().join(format!("tinytail-web-fuzz-{}", std::process::id()));
        let agent = crate::shared::agent_in(&dir, Default::default()).expect("a store in the temp directory");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
        let config = WebConfig {
            listen: LISTEN.parse().expect("a socket address"),
            assets: &[Asset { path: "/style.css", content_type: "text/css", gzip: b"\x1f\x8b" }],
            lan_interface: "lan0".into(),
            wan_interface: "wan0".into(),
            listen_any: false,
            host_names: host::default_names("gw", &[]),
        };
        Harness { agent, runtime, config, _dir: TempDir(dir) }
    }

    /// The page's state at the start of every input: password, one session, the API token.
    fn fresh_state(&self) -> Arc<WebState> {
        let state = WebState::default();
        {
            let mut inner = state.lock();
            inner.credentials.password = Some(PasswordHash::new(PASSWORD, 1, [7; 16]));
            inner.credentials.api_token = Some(ApiToken::new(API_TOKEN_BYTES, 0).0);
            inner.sessions.create(Instant::now(), SESSION_BYTES, CSRF_BYTES);
        }
        Arc::new(state)
    }
}

/// The fuzz target's body.
pub fn requests(data: &[u8]) {
    serve(data);
}

/// [`requests`], returning each response's status (for tests that the seeds reach what they
/// name).
pub fn serve(data: &[u8]) -> Vec<u16> {
    HARNESS.with(|h| {
        let mut statuses = Vec::new();
        let web = Web { node: h.agent.clone(), state: h.fresh_state() };
        let client: IpAddr = [127, 0, 0, 1].into();
        let mut rest = data;
        while let Ok(Some((mut req, head_len, body_len))) = http::parse_head(rest) {
            let rest_before = rest;
            let end = head_len.saturating_add(body_len).min(rest.len());
            req.body = rest.get(head_len..end).unwrap_or_default().to_vec();
            rest = rest.get(end..).unwrap_or_default();
            let response = if req.path == "/tailnet/login" {
                Response::text(404, "not fuzzed")
            } else {
                h.runtime.block_on(route(&web, &h.config, &req, client, Via::Lan))
            };
            // A secret the request itself did not carry must not come back (error messages
            // may quote what the client sent).
            let bytes = response.encode(req.method == "HEAD");
            let sent = rest_before.get(..end).unwrap_or_default();
            assert!(
                contains(sent, PASSWORD.as_bytes()) || !contains(&bytes, PASSWORD.as_bytes()),
                "a response carried the admin password"
            );
            statuses.push(response.status);
        }
        statuses
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
