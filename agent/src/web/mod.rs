//! The local web page and JSON API (`tinytail run --web-listen ADDR:PORT`, default from the
//! board file; `off` disables it). One small HTTP/1.1 server on the agent's tokio runtime:
//!
//! - `GET /`: first run asks for the admin password, then sign-in, then the status page with
//!   every change form ([`page`]); `GET /style.css`, `/app.js`: the gzipped assets build.rs
//!   embeds ([`Asset`]).
//! - `POST /setup`, `/login`, `/signout`: password and session ([`auth`]).
//! - `POST /routes`, `/exit-node`, `/snat`, `/hostname`, `/tailnet/login`, `/tailnet/logout`:
//!   changes, each turned into the same `ipc::Request` the CLI sends and handled by
//!   `node::handle_request`, which persists them in the store.
//! - `POST /lock/sign`: the Sign button of a peer tailnet lock keeps out (`lock sign NODEKEY`).
//! - `POST /api-token`: create (shown once) or revoke the API's bearer token.
//! - `/api/v2/device/self[/routes]`: the JSON API ([`api`]), bearer token only.
//!
//! Every request must name the router in its `Host` header, or it gets 403 ([`host`]: DNS
//! rebinding); `tinytail run` refuses to serve the page on the WAN or on every interface unless
//! told `--web-listen-any`.
//! With an HTTPS certificate (`tinytail cert`) the same page also listens on the router's
//! tailnet IPv4 address at 443 with TLS ([`https`]); there it answers to the certificate's
//! names and the tailnet address only.
//! Browser requests that change anything need the session cookie (HttpOnly, SameSite=Strict),
//! the session's CSRF token in the form, and, when the browser sends `Origin` or `Referer`,
//! one naming this host. Sign-in and setup use a double-submit CSRF cookie instead. Responses
//! never carry a private key, an auth key, the password or a stored token: the auth key in the
//! login form goes to the daemon and nowhere else; the API token exists in a response once,
//! right after it was created.

pub mod api;
pub mod auth;
#[doc(hidden)]
pub mod fuzz;
pub mod host;
pub mod http;
pub mod https;
pub mod lan;
pub mod page;
pub mod qr;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tinytail_core::key::{AuthKey, MachinePublic, NodePublic};
use tinytail_hal::store::ConfigKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use self::auth::{ApiToken, Credentials, Flash, LoginLimiter, PasswordHash, Sessions, SetupCode};
use self::http::{HttpError, Request, Response};
use crate::ipc::{self, Reply, UpArgs};
use crate::log::log;
use crate::node::handle_request;
use crate::shared::{hostinfo, Agent};
use crate::{clock, magicsock, random};

/// A static file of the page, gzipped by build.rs.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// `/style.css`
    pub path: &'static str,
    pub content_type: &'static str,
    pub gzip: &'static [u8],
}

/// Where and what the web serves.
#[derive(Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    pub assets: &'static [Asset],
    /// The LAN interface (board or `--lan-interface`): the one-click route offer, and its
    /// addresses are names the page answers to.
    pub lan_interface: String,
    /// The WAN interface (board or `--wan-interface`): the page refuses to listen there.
    pub wan_interface: String,
    /// `--web-listen-any`: the owner allows a listen address on every interface or the WAN.
    pub listen_any: bool,
    /// Host names the page answers to besides its addresses ([`host::default_names`]).
    pub host_names: Vec<String>,
}

/// Connections served at once, LAN and tailnet (HTTPS) listeners together; more wait in the
/// kernel's backlog.
const MAX_CONNECTIONS: usize = 16;
/// A client has this long to send its request, and we this long to send the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a change form waits for the daemon before answering "still applying" (the change
/// goes on in the background).
const CHANGE_WAIT: Duration = Duration::from_secs(20);
/// `up` requests from the web give up after this long (the CLI's `--timeout`).
const UP_TIMEOUT_SECS: u64 = 60;
/// An interactive login started from the page waits this long for the user.
const LOGIN_TIMEOUT_SECS: u64 = 600;
const SESSION_COOKIE: &str = "tt_session";
const PRE_CSRF_COOKIE: &str = "tt_csrf";

/// The web's state: the stored credentials (a copy of the store's record), sessions, the login
/// rate limit and the current setup code. Owned by the daemon so `tinytail web setup-code`
/// reaches it over the CLI socket.
#[derive(Default)]
pub struct WebState {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    credentials: Credentials,
    sessions: Sessions,
    limiter: LoginLimiter,
    setup_code: Option<SetupCode>,
}

impl WebState {
    /// From the store's `WebPasswordHash` record, if any.
    pub fn new(record: Option<&[u8]>) -> WebState {
        let credentials = record.map(Credentials::parse).unwrap_or_default();
        WebState { inner: Mutex::new(Inner { credentials, ..Inner::default() }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would already have aborted the process (panic=abort).
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new one-time setup code (replacing any earlier one), for `tinytail web setup-code`.
    pub fn issue_setup_code(&self) -> String {
        let code = SetupCode::new(random::bytes32(), Instant::now());
        let text = code.code().to_string();
        self.lock().setup_code = Some(code);
        text
    }
}

/// What every handler of the page works with: the agent (the node's state and the store) and
/// the page's own state.
#[derive(Clone)]
struct Web {
    node: Agent,
    state: Arc<WebState>,
}

/// The listener a request came in on: it decides which names the `Host` header may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The LAN listener (`--web-listen`), plain HTTP.
    Lan,
    /// The HTTPS listener on this tailnet address ([`https`]).
    Tailnet(IpAddr),
}

impl Via {
    fn scheme(self) -> &'static str {
        match self {
            Via::Lan => "http",
            Via::Tailnet(_) => "https",
        }
    }
}

/// Binds the listener (so a wrong address fails `tinytail run` at once) and serves in the
/// background. The daemon has run [`check_listen`] before anything else.
pub(crate) fn start(agent: &Agent, state: Arc<WebState>, config: WebConfig) -> Result<(), String> {
    let std_listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| format!("web: cannot listen on {}: {e}", config.listen))?;
    std_listener.set_nonblocking(true).map_err(|e| format!("web: {e}"))?;
    let listener = TcpListener::from_std(std_listener).map_err(|e| format!("web: {e}"))?;
    if config.listen.ip().is_unspecified() {
        log(&format!(
            "web: listening on every interface ({}), WAN and tailnet included, as asked",
            config.listen
        ));
    } else {
        log(&format!("web: page at http://{}/", config.listen));
    }
    let web = Web { node: agent.clone(), state };
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    https::start(web.clone(), Arc::clone(&config), Arc::clone(&slots));
    crate::task::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    log(&format!("web: accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (web, config) = (web.clone(), Arc::clone(&config));
            crate::task::spawn(async move {
                serve_connection(&web, &config, stream, peer, Via::Lan).await;
                drop(permit);
            });
        }
    });
    Ok(())
}

/// One request and its reply, over plain TCP or TLS.
async fn serve_connection<S>(web: &Web, config: &WebConfig, mut stream: S, peer: SocketAddr, via: Via)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let response = match tokio::time::timeout(IO_TIMEOUT, read_request(&mut stream)).await {
        Err(_) => return,
        Ok(Err(None)) => return,
        Ok(Err(Some(e))) => (Response::text(e.status(), e.message()), false),
        Ok(Ok(req)) => {
            let head_only = req.method == "HEAD";
            (route(web, config, &req, peer.ip(), via).await, head_only)
        }
    };
    let bytes = response.0.encode(response.1);
    let _ = tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
}

/// Reads one request. `Err(None)`: the client went away; `Err(Some(_))`: answer with an error.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Request, Option<HttpError>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    let (mut req, head_len, body_len) = loop {
        let n = stream.read(&mut chunk).await.map_err(|_| None)?;
        if n == 0 {
            return Err(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(parsed) = http::parse_head(&buf).map_err(Some)? {
            break parsed;
        }
    };
    while buf.len() < head_len + body_len {
        let n = stream.read(&mut chunk).await.map_err(|_| None)?;
        if n == 0 {
            return Err(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    req.body = buf.get(head_len..head_len + body_len).unwrap_or_default().to_vec();
    Ok(req)
}

/// Refuses a listen address on the WAN or on every interface unless allowed (see [`host`]).
pub fn check_listen(config: &WebConfig) -> Result<(), String> {
    let addresses = tinytail_hal::net::linux::addresses_by_interface()
        .map_err(|e| format!("web: reading interface addresses: {e}"))?;
    host::check_listen(config, &addresses)
}

async fn route(web: &Web, config: &WebConfig, req: &Request, client: IpAddr, via: Via) -> Response {
    let mut response = answer(web, config, req, client, via).await;
    if matches!(via, Via::Tailnet(_)) {
        // A cookie set over HTTPS never goes back over plain HTTP to the same name.
        for (name, value) in &mut response.headers {
            if *name == "Set-Cookie" {
                value.push_str("; Secure");
            }
        }
    }
    response
}

/// [`route`]'s answer before the cookies are marked for the transport.
async fn answer(web: &Web, config: &WebConfig, req: &Request, client: IpAddr, via: Via) -> Response {
    // Every request, before anything else: a name that is not ours is a DNS-rebinding site.
    let ours = match via {
        Via::Lan => {
            let addresses = || tinytail_hal::net::linux::addresses_by_interface().unwrap_or_default();
            host::allowed(req.header("host"), config, addresses)
        }
        Via::Tailnet(listen) => {
            host::allowed_tailnet(req.header("host"), listen, web.node.lock().certs.served.keys())
        }
    };
    if !ours {
        return Response::text(403, "forbidden: the Host header does not name this router");
    }
    if req.path.starts_with("/api/") {
        return api_route(web, req).await;
    }
    let get = matches!(req.method.as_str(), "GET" | "HEAD");
    if get {
        if let Some(asset) = config.assets.iter().find(|a| a.path == req.path) {
            let mut r = Response::new(200, asset.content_type, asset.gzip.to_vec());
            r.headers.retain(|(n, _)| *n != "Cache-Control");
            return r
                .with_header("Content-Encoding", "gzip".into())
                .with_header("Cache-Control", "max-age=300".into())
                .with_header("Vary", "Accept-Encoding".into());
        }
        return match req.path.as_str() {
            "/" => index(web, config, req),
            "/setup" => setup_page(web, None),
            _ => Response::text(404, "not found"),
        };
    }
    if req.method != "POST" {
        return Response::text(405, "method not allowed");
    }
    if let Err(why) = check_origin(req, via.scheme()) {
        return Response::text(403, &format!("forbidden: {why}"));
    }
    match req.path.as_str() {
        "/setup" => post_setup(web, req, client).await,
        "/login" => post_login(web, req, client).await,
        path => {
            let Some(token) = req.cookie(SESSION_COOKIE).map(str::to_string) else {
                return Response::text(
                    403,
                    "forbidden: not signed in (or the session expired); reload the page",
                );
            };
            let csrf_ok = {
                let mut page = web.state.lock();
                match page.sessions.get(&token, Instant::now()) {
                    None => {
                        return Response::text(
                            403,
                            "forbidden: the session expired; reload the page and sign in",
                        )
                    }
                    Some(s) => req
                        .form("csrf")
                        .is_some_and(|c| auth::constant_time_eq(c.as_bytes(), s.csrf.as_bytes())),
                }
            };
            if !csrf_ok {
                return Response::text(403, "forbidden: missing or wrong CSRF token; reload the page");
            }
            let flash = match path {
                "/signout" => {
                    web.state.lock().sessions.remove(&token);
                    return Response::see_other("/").with_header("Set-Cookie", clear_cookie(SESSION_COOKIE));
                }
                "/routes" => post_routes(web, req).await,
                "/exit-node" => post_toggle(web, req, |up, on| up.advertise_exit_node = Some(on)).await,
                "/snat" => post_toggle(web, req, |up, on| up.snat_subnet_routes = Some(on)).await,
                "/hostname" => post_hostname(web, req).await,
                "/tailnet/login" => post_tailnet_login(web, req).await,
                "/tailnet/logout" => from_reply(change(web, ipc::Request::Logout).await, "Logged out."),
                "/api-token" => post_api_token(web, &token, req),
                "/lock/sign" => post_lock_sign(web, req).await,
                _ => return Response::text(404, "not found"),
            };
            if let Some(s) = web.state.lock().sessions.get(&token, Instant::now()) {
                s.flash = Some(flash);
            }
            Response::see_other("/")
        }
    }
}

/// A browser sends `Origin` on every POST (and `Referer` with our same-origin policy); when
/// either is there it must name this host, as the `Host` header does, with the listener's
/// `scheme` (`http` or `https`).
fn check_origin(req: &Request, scheme: &str) -> Result<(), &'static str> {
    let host = req.header("host").unwrap_or("");
    let names_us = |url: &str| {
        url.strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .map(|rest| rest.split('/').next().unwrap_or(""))
            .is_some_and(|authority| !host.is_empty() && authority.eq_ignore_ascii_case(host))
    };
    if let Some(origin) = req.header("origin") {
        if !names_us(origin) {
            return Err("cross-origin request");
        }
    } else if let Some(referer) = req.header("referer") {
        if !names_us(referer) {
            return Err("cross-origin request");
        }
    }
    Ok(())
}

fn index(web: &Web, config: &WebConfig, req: &Request) -> Response {
    let has_password = web.state.lock().credentials.password.is_some();
    if !has_password {
        return setup_page(web, None);
    }
    let now = Instant::now();
    let token = req.cookie(SESSION_COOKIE).map(str::to_string);
    let session = token.as_deref().and_then(|t| {
        let mut page = web.state.lock();
        let api_token = page.credentials.api_token.as_ref().map(|t| (t.id.clone(), t.created));
        page.sessions.get(t, now).map(|s| (s.csrf.clone(), s.flash.take(), s.new_api_token.take(), api_token))
    });
    let Some((csrf, flash, new_api_token, api_token)) = session else {
        return login_page(None, 200);
    };
    let (status, engine) = status_json(web);
    let certificates = crate::certify::status_list(&web.node);
    let listen_ip = Some(config.listen.ip()).filter(|ip| !ip.is_unspecified() && !ip.is_loopback());
    let lan_subnets = lan::read(&config.lan_interface, listen_ip);
    let view = page::StatusView {
        status: &status,
        csrf: &csrf,
        flash: flash.as_ref(),
        new_api_token: new_api_token.as_deref(),
        api_token: api_token.as_ref().map(|(id, created)| (id.as_str(), *created)),
        lan_subnets: &lan_subnets,
        login_qr: status["AuthURL"].as_str().filter(|u| !u.is_empty()).and_then(qr::svg_data_uri),
        engine: engine.as_ref(),
        certificates: &certificates,
        now: clock::unix_now(),
    };
    Response::html(200, page::status(&view))
}

/// The status object, as `tinytail status --json` has it, and the datapath's status it was
/// built from (`None` while the datapath is not running), both under one lock.
fn status_json(web: &Web) -> (serde_json::Value, Option<magicsock::EngineStatus>) {
    let s = web.node.lock();
    (crate::status::json(&s), s.engine_status())
}

fn setup_page(web: &Web, error: Option<&str>) -> Response {
    let has_password = web.state.lock().credentials.password.is_some();
    let csrf = auth::hex(&random::bytes32());
    Response::html(if error.is_some() { 400 } else { 200 }, page::setup(&csrf, has_password, error))
        .with_header("Set-Cookie", pre_csrf_cookie(&csrf))
}

fn login_page(error: Option<&str>, status: u16) -> Response {
    let csrf = auth::hex(&random::bytes32());
    Response::html(status, page::login(&csrf, error)).with_header("Set-Cookie", pre_csrf_cookie(&csrf))
}

/// Sign-in and setup come before any session: the form's token must equal the cookie's.
fn pre_csrf_ok(req: &Request) -> bool {
    match (req.cookie(PRE_CSRF_COOKIE), req.form("csrf")) {
        (Some(cookie), Some(form)) => {
            !cookie.is_empty() && auth::constant_time_eq(cookie.as_bytes(), form.as_bytes())
        }
        _ => false,
    }
}

async fn post_setup(web: &Web, req: &Request, client: IpAddr) -> Response {
    if !pre_csrf_ok(req) {
        return Response::text(403, "forbidden: missing or wrong CSRF token; reload the page");
    }
    let password = req.form("password").unwrap_or_default();
    let repeated = req.form("password2").unwrap_or_default();
    {
        let mut page = web.state.lock();
        if page.credentials.password.is_some() {
            // A reset: only with the setup code, and rate-limited like the password.
            let now = Instant::now();
            if let Err(wait) = page.limiter.check(client, now) {
                return too_many(wait);
            }
            let code = req.form("code").unwrap_or_default();
            let valid = page.setup_code.as_ref().is_some_and(|c| c.accepts(&code, now));
            if !valid {
                page.limiter.failed(client, now);
                drop(page);
                return setup_page(web, Some("wrong or expired setup code"));
            }
        }
    }
    if let Err(e) = auth::check_new_password(&password, &repeated) {
        return setup_page(web, Some(&e));
    }
    let salt: [u8; 16] = random::bytes32()[..16].try_into().unwrap_or([0; 16]);
    let hash = match tokio::task::spawn_blocking(move || {
        PasswordHash::new(&password, auth::PBKDF2_ITERATIONS, salt)
    })
    .await
    {
        Ok(h) => h,
        Err(_) => return Response::text(500, "hashing failed"),
    };
    let record = {
        let mut page = web.state.lock();
        page.credentials.password = Some(hash);
        page.setup_code = None;
        page.sessions.clear();
        page.limiter.succeeded(client);
        page.credentials.encode()
    };
    if let Err(e) = web.node.store.put_config(ConfigKey::WebPasswordHash, Some(&record)) {
        return Response::text(500, &format!("saving the password: {e}"));
    }
    log("web: admin password set");
    signed_in(web, "Password set.")
}

async fn post_login(web: &Web, req: &Request, client: IpAddr) -> Response {
    if !pre_csrf_ok(req) {
        return Response::text(403, "forbidden: missing or wrong CSRF token; reload the page");
    }
    let hash = {
        let mut page = web.state.lock();
        if let Err(wait) = page.limiter.check(client, Instant::now()) {
            return too_many(wait);
        }
        page.credentials.password.clone()
    };
    let Some(hash) = hash else { return Response::see_other("/") };
    let password = req.form("password").unwrap_or_default();
    let ok = password.len() <= auth::MAX_PASSWORD_LEN
        && tokio::task::spawn_blocking(move || hash.verify(&password)).await.unwrap_or(false);
    if !ok {
        web.state.lock().limiter.failed(client, Instant::now());
        log(&format!("web: wrong password from {client}"));
        return login_page(Some("Wrong password."), 401);
    }
    web.state.lock().limiter.succeeded(client);
    signed_in(web, "Signed in.")
}

fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs().max(1);
    login_page(Some(&format!("Too many wrong attempts: wait {secs} seconds.")), 429)
        .with_header("Retry-After", secs.to_string())
}

fn signed_in(web: &Web, message: &str) -> Response {
    let token = {
        let mut page = web.state.lock();
        let token = page.sessions.create(Instant::now(), random::bytes32(), random::bytes32());
        if let Some(s) = page.sessions.get(&token, Instant::now()) {
            s.flash = Some(Flash { ok: true, text: message.into() });
        }
        token
    };
    Response::see_other("/")
        .with_header(
            "Set-Cookie",
            format!(
                "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                auth::SESSION_MAX.as_secs()
            ),
        )
        .with_header("Set-Cookie", clear_cookie(PRE_CSRF_COOKIE))
}

fn pre_csrf_cookie(value: &str) -> String {
    format!("{PRE_CSRF_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict")
}

fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Runs a request through the daemon's handler (the CLI's path) in its own task, so a browser
/// that goes away never cancels a change halfway. Returns the final reply, or, if the daemon
/// sends a login URL first or takes longer than [`CHANGE_WAIT`], a note that it goes on.
async fn change(web: &Web, request: ipc::Request) -> Result<String, String> {
    let (urls, mut url_rx) = tokio::sync::mpsc::unbounded_channel();
    let task_agent = web.node.clone();
    // The reply comes back on a channel, so the task is spawned like every other (task::spawn).
    let (done, reply) = tokio::sync::oneshot::channel();
    crate::task::spawn(async move {
        let _ = done.send(handle_request(&task_agent, request, Some(urls)).await);
    });
    tokio::select! {
        reply = reply => match reply {
            Ok(Reply::Ok { message, .. }) => Ok(message),
            Ok(Reply::Error(e)) => Err(e),
            Ok(Reply::AuthUrl(_) | Reply::Progress(_)) | Err(_) => Err("the web ended the request early".into()),
        },
        Some(Reply::AuthUrl(_)) = url_rx.recv() => Ok("Open the login URL shown below to finish logging in.".into()),
        () = tokio::time::sleep(CHANGE_WAIT) => Ok("Still applying; this page refreshes.".into()),
    }
}

fn from_reply(result: Result<String, String>, done: &str) -> Flash {
    match result {
        Ok(m) if m.is_empty() || m == "Success." => Flash { ok: true, text: done.into() },
        Ok(m) => Flash { ok: true, text: m },
        Err(e) => Flash { ok: false, text: e },
    }
}

fn registered(web: &Web) -> bool {
    web.node.lock().state.registered
}

const LOG_IN_FIRST: &str = "Log in to the tailnet first.";

async fn post_routes(web: &Web, req: &Request) -> Flash {
    let text = req.form("routes").unwrap_or_default();
    let mut routes = Vec::new();
    for r in text.split([',', ' ', '\n']).map(str::trim).filter(|r| !r.is_empty()) {
        match crate::prefix::Prefix::parse_route(r) {
            Ok(p) => routes.push(p.to_string()),
            Err(e) => return Flash { ok: false, text: e.to_string() },
        }
    }
    routes.sort();
    routes.dedup();
    if !registered(web) {
        return Flash { ok: false, text: LOG_IN_FIRST.into() };
    }
    let up = UpArgs { advertise_routes: Some(routes), timeout_secs: UP_TIMEOUT_SECS, ..UpArgs::default() };
    from_reply(change(web, ipc::Request::Up(up)).await, "Routes saved.")
}

async fn post_toggle(web: &Web, req: &Request, set: impl Fn(&mut UpArgs, bool)) -> Flash {
    let on = match req.form("on").as_deref() {
        Some("true") => true,
        Some("false") => false,
        _ => return Flash { ok: false, text: "bad form".into() },
    };
    if !registered(web) {
        return Flash { ok: false, text: LOG_IN_FIRST.into() };
    }
    let mut up = UpArgs { timeout_secs: UP_TIMEOUT_SECS, ..UpArgs::default() };
    set(&mut up, on);
    from_reply(change(web, ipc::Request::Up(up)).await, "Saved.")
}

async fn post_hostname(web: &Web, req: &Request) -> Flash {
    let hostname = req.form("hostname").unwrap_or_default().trim().to_string();
    let valid = hostname.len() <= 63
        && hostname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !hostname.starts_with('-')
        && !hostname.ends_with('-');
    if !valid {
        return Flash {
            ok: false,
            text: "A hostname is up to 63 letters, digits and inner dashes (empty: the system's).".into(),
        };
    }
    if !registered(web) {
        return Flash { ok: false, text: LOG_IN_FIRST.into() };
    }
    let up = UpArgs { hostname: Some(hostname), timeout_secs: UP_TIMEOUT_SECS, ..UpArgs::default() };
    from_reply(change(web, ipc::Request::Up(up)).await, "Hostname saved.")
}

async fn post_tailnet_login(web: &Web, req: &Request) -> Flash {
    let auth_key = req.form("auth_key").map(|k| k.trim().to_string()).filter(|k| !k.is_empty());
    if let Some(key) = &auth_key {
        // The CLI's check and message: API tokens and OAuth secrets are refused by name.
        if let Err(e) = AuthKey::check(key) {
            return Flash { ok: false, text: e.to_string() };
        }
    }
    let login_server = req.form("login_server").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(url) = &login_server {
        if let Err(e) = crate::control::ServerUrl::parse(url) {
            return Flash { ok: false, text: e.to_string() };
        }
    }
    let timeout_secs = if auth_key.is_some() { UP_TIMEOUT_SECS } else { LOGIN_TIMEOUT_SECS };
    let up = UpArgs { login_server, auth_key, timeout_secs, ..UpArgs::default() };
    from_reply(change(web, ipc::Request::Up(up)).await, "Logged in.")
}

/// The Sign button of a locked-out peer: `lock sign NODEKEY`, as the CLI sends it. The key is
/// checked before anything else; the lock verb then checks that our key is trusted.
async fn post_lock_sign(web: &Web, req: &Request) -> Flash {
    let text = req.form("node").unwrap_or_default();
    let node = match NodePublic::parse(text.trim()) {
        Ok(key) => key,
        Err(e) => return Flash { ok: false, text: format!("decoding node-key: {e}") },
    };
    if !registered(web) {
        return Flash { ok: false, text: LOG_IN_FIRST.into() };
    }
    let args = ipc::LockArgs { verb: "sign".into(), flags: vec![], args: vec![node.to_string()] };
    match change(web, ipc::Request::Lock(args)).await {
        Ok(m) if m.is_empty() || m == "Success." => Flash {
            ok: true,
            text: format!("Signed {node}; it gets connectivity once control hands out the signature."),
        },
        Ok(m) => Flash { ok: true, text: m },
        Err(e) => Flash { ok: false, text: first_line(&e, "signing failed") },
    }
}

/// The verb's errors can quote control's reply: one line of it on the page.
fn first_line(text: &str, empty: &str) -> String {
    text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or(empty).to_string()
}

fn post_api_token(web: &Web, session: &str, req: &Request) -> Flash {
    let (record, shown, text) = {
        let mut page = web.state.lock();
        let (shown, text) = match req.form("do").as_deref() {
            Some("create") => {
                let (token, full) = ApiToken::new(random::bytes32(), clock::unix_now());
                page.credentials.api_token = Some(token);
                (Some(full), "API token created; it is shown below once.")
            }
            Some("revoke") => {
                page.credentials.api_token = None;
                (None, "API token revoked.")
            }
            _ => return Flash { ok: false, text: "bad form".into() },
        };
        (page.credentials.encode(), shown, text)
    };
    if let Err(e) = web.node.store.put_config(ConfigKey::WebPasswordHash, Some(&record)) {
        return Flash { ok: false, text: format!("saving the token: {e}") };
    }
    if let Some(s) = web.state.lock().sessions.get(session, Instant::now()) {
        s.new_api_token = shown;
    }
    Flash { ok: true, text: text.into() }
}

async fn api_route(web: &Web, req: &Request) -> Response {
    let presented = req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
    let authorized = {
        let page = web.state.lock();
        match (&page.credentials.api_token, presented) {
            (Some(token), Some(p)) => token.matches(p),
            _ => false,
        }
    };
    if !authorized {
        return Response::json_error(401, "API token invalid")
            .with_header("WWW-Authenticate", "Bearer realm=\"tinytail\"".into());
    }
    let rest = req.path.strip_prefix("/api/v2/device/").unwrap_or("");
    let (id, sub) = rest.split_once('/').unwrap_or((rest, ""));
    let src = device_source(web);
    let ours = id == "self"
        || src
            .self_node
            .as_ref()
            .is_some_and(|n| id == n.id.to_string() || (!n.stable_id.is_empty() && id == n.stable_id));
    if id.is_empty() || !ours {
        return Response::json_error(404, "not found: this API knows one device, \"self\"");
    }
    match (req.method.as_str(), sub) {
        ("GET" | "HEAD", "") => match api::Fields::parse(req.query_param("fields").as_deref()) {
            Ok(fields) => Response::json(200, &api::device(&src, fields)),
            Err(e) => Response::json_error(400, &e),
        },
        ("GET" | "HEAD", "routes") => Response::json(200, &api::routes(&src)),
        ("POST", "routes") => api_set_routes(web, req).await,
        (_, "" | "routes") => Response::json_error(405, "method not allowed"),
        _ => Response::json_error(404, "not found"),
    }
}

async fn api_set_routes(web: &Web, req: &Request) -> Response {
    let (subnets, exit) = match api::parse_routes_body(&req.body) {
        Ok(r) => r,
        Err(e) => return Response::json_error(400, &e),
    };
    if !registered(web) {
        return Response::json_error(409, "not logged in to a tailnet");
    }
    let up = UpArgs {
        advertise_routes: Some(subnets),
        advertise_exit_node: Some(exit),
        timeout_secs: UP_TIMEOUT_SECS,
        ..UpArgs::default()
    };
    match change(web, ipc::Request::Up(up)).await {
        Ok(_) => Response::json(200, &api::routes(&device_source(web))),
        Err(e) => Response::json_error(502, &e),
    }
}

/// A snapshot of what the device object shows. Only public keys leave this function.
fn device_source(web: &Web) -> api::DeviceSource {
    // Before the lock below: the status list takes it itself.
    let certificates = crate::certify::status_list(&web.node);
    let s = web.node.lock();
    let public = |k: &tinytail_core::key::PrivateKey| tinytail_core::control::noise::public_key(k);
    let hostinfo = hostinfo(&s.state.prefs, &s.version, 0);
    api::DeviceSource {
        self_node: s.netmap.self_node.clone(),
        machine_key: s.state.machine_key.as_ref().map(|k| MachinePublic(public(k)).to_string()),
        node_key: s.state.node_key.as_ref().map(|k| NodePublic(public(k)).to_string()),
        advertised_routes: hostinfo.routable_ips,
        hostname: hostinfo.hostname,
        client_version: s.version.clone(),
        connected: s.control.connected,
        now: clock::rfc3339(clock::unix_now()),
        derp: s.netmap.derp_regions.get(&s.preferred_derp).map(|r| r.region_code.clone()).unwrap_or_default(),
        engine: s.engine_status(),
        tailnet_lock_key: s.state.lock_public().map(|k| k.to_string()),
        tailnet_lock_error: api::tailnet_lock_error(
            s.tka.enabled(),
            s.tka.verdicts.self_signed,
            s.tka.last_error.as_deref(),
        ),
        certificates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            path: "/routes".into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            ..Request::default()
        }
    }

    /// A page on 127.0.0.1:8088 over an empty store in a temp directory.
    fn test_web(name: &str) -> (Web, WebConfig, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("tinytail-web-test-{}-{name}", std::process::id()));
        let agent = crate::shared::agent_in(&dir, Default::default()).unwrap();
        let config = WebConfig {
            listen: "127.0.0.1:8088".parse().unwrap(),
            assets: &[Asset { path: "/style.css", content_type: "text/css", gzip: &[] }],
            lan_interface: "lan0".into(),
            wan_interface: "wan0".into(),
            listen_any: false,
            host_names: host::default_names("gw", &[]),
        };
        (Web { node: agent, state: Arc::new(WebState::default()) }, config, dir)
    }

    #[test]
    fn a_rebinding_host_gets_403_everywhere_and_cannot_set_the_first_password() {
        let (web, config, dir) = test_web("rebinding");
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let request = |method: &str, path: &str, host: &str| Request {
            method: method.into(),
            path: path.into(),
            headers: vec![
                ("host".into(), host.into()),
                ("origin".into(), format!("http://{host}")),
                ("cookie".into(), format!("{PRE_CSRF_COOKIE}=t0ken")),
                ("content-type".into(), "application/x-www-form-urlencoded".into()),
            ],
            body: b"csrf=t0ken&password=correct-horse-9&password2=correct-horse-9".to_vec(),
            ..Request::default()
        };
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        for (method, path) in [
            ("GET", "/"),
            ("GET", "/setup"),
            ("POST", "/setup"),
            ("POST", "/login"),
            ("POST", "/routes"),
            ("POST", "/lock/sign"),
            ("GET", "/style.css"),
            ("GET", "/api/v2/device/self"),
            ("GET", "/nonexistent"),
        ] {
            let reply = runtime.block_on(route(
                &web,
                &config,
                &request(method, path, "attacker.example:8088"),
                client,
                Via::Lan,
            ));
            assert_eq!(reply.status, 403, "{method} {path}");
            assert!(reply.body.starts_with(b"forbidden"), "{method} {path}");
        }
        assert!(web.state.lock().credentials.password.is_none(), "the rebinding site set the password");
        // The same setup request naming the router does set it: the Host alone made the difference.
        let reply = runtime.block_on(route(
            &web,
            &config,
            &request("POST", "/setup", "127.0.0.1:8088"),
            client,
            Via::Lan,
        ));
        assert_eq!(reply.status, 303, "{}", String::from_utf8_lossy(&reply.body));
        assert!(web.state.lock().credentials.password.is_some());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn cookies_are_secure_over_https_only() {
        let (web, config, dir) = test_web("secure-cookie");
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let tailnet: IpAddr = "100.64.0.3".parse().unwrap();
        let cookies = |host: &str, via: Via| {
            let req = Request {
                method: "GET".into(),
                path: "/setup".into(),
                headers: vec![("host".into(), host.into())],
                ..Request::default()
            };
            let reply = runtime.block_on(route(&web, &config, &req, "127.0.0.1".parse().unwrap(), via));
            assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
            let set: Vec<String> =
                reply.headers.iter().filter(|(n, _)| *n == "Set-Cookie").map(|(_, v)| v.clone()).collect();
            assert!(!set.is_empty());
            set
        };
        assert!(cookies("100.64.0.3", Via::Tailnet(tailnet)).iter().all(|c| c.ends_with("; Secure")));
        assert!(cookies("127.0.0.1:8088", Via::Lan).iter().all(|c| !c.contains("Secure")));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// POST /lock/sign with `cookie` and `body` (a same-origin browser form), and the flash the
    /// page would show next.
    fn lock_sign(
        web: &Web,
        config: &WebConfig,
        cookie: Option<&str>,
        body: &str,
    ) -> (Response, Option<Flash>) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut headers = vec![
            ("host".to_string(), "127.0.0.1:8088".to_string()),
            ("origin".to_string(), "http://127.0.0.1:8088".to_string()),
            ("content-type".to_string(), "application/x-www-form-urlencoded".to_string()),
        ];
        if let Some(token) = cookie {
            headers.push(("cookie".into(), format!("{SESSION_COOKIE}={token}")));
        }
        let req = Request {
            method: "POST".into(),
            path: "/lock/sign".into(),
            headers,
            body: body.as_bytes().to_vec(),
            ..Request::default()
        };
        let reply = runtime.block_on(route(web, config, &req, "127.0.0.1".parse().unwrap(), Via::Lan));
        let flash = cookie
            .and_then(|t| web.state.lock().sessions.get(t, Instant::now()).and_then(|s| s.flash.take()));
        (reply, flash)
    }

    #[test]
    fn lock_sign_needs_the_session_and_its_csrf_token() {
        let (web, config, dir) = test_web("lock-sign-auth");
        let node = NodePublic([0xdd; 32]).to_string();
        let (token, csrf) = {
            let mut page = web.state.lock();
            let token = page.sessions.create(Instant::now(), [1; 32], [2; 32]);
            let csrf = page.sessions.get(&token, Instant::now()).unwrap().csrf.clone();
            (token, csrf)
        };
        web.node.lock().state.registered = true;
        // Not signed in (no cookie, or one that names no session).
        for (cookie, why) in
            [(None, "forbidden: not signed in"), (Some("0123"), "forbidden: the session expired")]
        {
            let (reply, _) = lock_sign(&web, &config, cookie, &format!("csrf={csrf}&node={node}"));
            assert_eq!(reply.status, 403, "{cookie:?}");
            assert!(reply.body.starts_with(why.as_bytes()), "{cookie:?}");
        }
        // Signed in, but no token or a wrong one.
        for body in
            [format!("node={node}"), format!("csrf=&node={node}"), format!("csrf={csrf}0&node={node}")]
        {
            let (reply, flash) = lock_sign(&web, &config, Some(&token), &body);
            assert_eq!(reply.status, 403, "{body}");
            assert!(String::from_utf8_lossy(&reply.body).contains("CSRF"), "{body}");
            assert!(flash.is_none(), "{body}: refused before the handler");
        }
        // With both, the request reaches the lock verb: here it stops at the missing control
        // session (the error's one line), which shows the route sent `lock sign NODEKEY`.
        let (reply, flash) = lock_sign(&web, &config, Some(&token), &format!("csrf={csrf}&node={node}"));
        assert_eq!(reply.status, 303);
        let flash = flash.expect("a note for the page");
        assert!(!flash.ok && flash.text.contains("not connected to the control server"), "{}", flash.text);
        assert!(!flash.text.contains('\n'), "one line: {}", flash.text);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn errors_from_the_lock_verb_show_one_line() {
        assert_eq!(first_line("signing failed: 500\n<html>\n</html>", "x"), "signing failed: 500");
        assert_eq!(first_line("\n  signing failed: 403  \r\nmore", "x"), "signing failed: 403");
        assert_eq!(first_line("", "signing failed"), "signing failed");
    }

    #[test]
    fn lock_sign_refuses_a_bad_node_key_before_anything() {
        let (web, config, dir) = test_web("lock-sign-key");
        let token = web.state.lock().sessions.create(Instant::now(), [1; 32], [2; 32]);
        let csrf = auth::hex(&[2; 32]);
        let short = format!("nodekey:{}", "dd".repeat(31));
        let machine = format!("mkey:{}", "dd".repeat(32));
        let not_hex = format!("nodekey:{}", "zz".repeat(32));
        for registered in [false, true] {
            web.node.lock().state.registered = registered;
            for node in ["", "tlpub:00", &short, &machine, &not_hex, "nodekey:%0Aline2"] {
                let (reply, flash) =
                    lock_sign(&web, &config, Some(&token), &format!("csrf={csrf}&node={node}"));
                assert_eq!(reply.status, 303, "{node}");
                let flash = flash.expect("a note for the page");
                assert!(!flash.ok, "{node}");
                assert!(flash.text.starts_with("decoding node-key: "), "{node}: {}", flash.text);
                assert!(!flash.text.contains('\n'), "one line: {}", flash.text);
            }
        }
        // A good key while logged out: no request to control either.
        web.node.lock().state.registered = false;
        let node = NodePublic([0xdd; 32]).to_string();
        let (_, flash) = lock_sign(&web, &config, Some(&token), &format!("csrf={csrf}&node={node}"));
        assert_eq!(flash.map(|f| f.text).as_deref(), Some(LOG_IN_FIRST));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn origin_must_name_this_host_when_present() {
        assert!(check_origin(
            &post(&[("host", "192.0.2.1:8088"), ("origin", "http://192.0.2.1:8088")]),
            "http"
        )
        .is_ok());
        assert!(
            check_origin(&post(&[("host", "192.0.2.1:8088")]), "http").is_ok(),
            "no Origin: the CSRF token decides"
        );
        assert!(check_origin(
            &post(&[("host", "192.0.2.1:8088"), ("origin", "http://evil.example")]),
            "http"
        )
        .is_err());
        assert!(check_origin(&post(&[("host", "192.0.2.1:8088"), ("origin", "null")]), "http").is_err());
        assert!(check_origin(
            &post(&[("host", "192.0.2.1:8088"), ("origin", "http://192.0.2.1:8089")]),
            "http"
        )
        .is_err());
        assert!(check_origin(
            &post(&[("host", "192.0.2.1:8088"), ("referer", "http://192.0.2.1:8088/")]),
            "http"
        )
        .is_ok());
        assert!(check_origin(
            &post(&[("host", "192.0.2.1:8088"), ("referer", "http://192.0.2.1.evil/")]),
            "http"
        )
        .is_err());
        assert!(
            check_origin(&post(&[("origin", "http://192.0.2.1:8088")]), "http").is_err(),
            "no Host, no match"
        );
        // Over HTTPS the origin is https://, and http:// is another origin (and the reverse).
        let name = "router.tail1234.ts.net";
        let https = |origin: &str| post(&[("host", name), ("origin", origin)]);
        assert!(check_origin(&https("https://router.tail1234.ts.net"), "https").is_ok());
        assert!(check_origin(&https("http://router.tail1234.ts.net"), "https").is_err());
        assert!(check_origin(&https("https://router.tail1234.ts.net"), "http").is_err());
        assert!(check_origin(&https("https://router.tail1234.ts.net.evil"), "https").is_err());
    }

    #[test]
    fn pre_session_csrf_is_double_submit() {
        let mut req = post(&[("cookie", "tt_csrf=abc")]);
        req.body = b"csrf=abc&password=x".to_vec();
        assert!(pre_csrf_ok(&req));
        req.body = b"csrf=abd&password=x".to_vec();
        assert!(!pre_csrf_ok(&req));
        req.body = b"password=x".to_vec();
        assert!(!pre_csrf_ok(&req));
        let mut no_cookie = post(&[]);
        no_cookie.body = b"csrf=&password=x".to_vec();
        assert!(!pre_csrf_ok(&no_cookie));
    }

    #[test]
    fn web_state_loads_the_stored_record_and_issues_codes() {
        let hash = PasswordHash::new("long password", 1, [0; 16]);
        let record = Credentials { password: Some(hash), api_token: None }.encode();
        let web = WebState::new(Some(&record));
        assert!(web.lock().credentials.password.is_some());
        let a = web.issue_setup_code();
        let b = web.issue_setup_code();
        assert_ne!(a, b);
        assert!(web.lock().setup_code.as_ref().is_some_and(|c| c.accepts(&b, Instant::now())));
        assert!(WebState::new(None).lock().credentials.password.is_none());
    }
}
