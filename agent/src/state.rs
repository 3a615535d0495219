//! The agent's persistent state: machine key, node key, the previous node key, and the prefs
//! `up` set, kept in `hal::store` (the power-safe flash store; `--state PATH` names its image
//! file or MTD device). Everything else in the agent goes through [`StateStore`].
//!
//! Private keys exist only here and in memory. Auth keys are never part of the state.

use std::path::Path;
use std::sync::Mutex;

use tinytail_core::key::{NlPublic, NodePublic, PrivateKey};
use tinytail_hal::board::Storage;
use tinytail_hal::store::{self, ConfigKey, DeviceFlash, Record, Store, StoreError, Transaction};

/// Stored form of boolean config records.
const ON: &[u8] = b"on";
const OFF: &[u8] = b"off";
/// Bytes of AUMs per store transaction: a transaction is one frame, which must fit an erase
/// block (32 KiB in image files, 64 KiB on most router NOR flash).
const TKA_TRANSACTION_BYTES: usize = 8 * 1024;

/// The prefs `tinytail up` sets (flags spelled as `tailscale up` spells them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prefs {
    pub login_server: String,
    pub hostname: String,
    pub advertise_routes: Vec<String>,
    pub advertise_exit_node: bool,
    /// `--snat-subnet-routes` (default true).
    pub snat_subnet_routes: bool,
    pub accept_routes: bool,
}

/// Everything the agent keeps across restarts.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub machine_key: Option<PrivateKey>,
    pub node_key: Option<PrivateKey>,
    /// The node key we replaced, sent as `OldNodeKey` until control confirms the new one.
    pub old_node_key: Option<NodePublic>,
    pub prefs: Prefs,
    /// True after a successful registration (until logout). Stored as "a node key exists": the
    /// node key is written only once control accepted it.
    pub registered: bool,
    /// `up` sets it, `down` clears it: whether to connect at start. A store written before this
    /// record existed has none: a stored node key then means "running".
    pub want_running: bool,
    /// Control's ID for us, for status only; not stored (the map brings it).
    pub node_id: Option<i64>,
    /// Our tailnet-lock key: an ed25519 seed, made on the first run and kept across logouts
    /// (tailscaled keeps its `NetworkLockKey` the same way). Never shown; its public half is.
    pub lock_key: Option<PrivateKey>,
}

impl State {
    /// Our tailnet-lock public key (`tlpub:` in the CLI, `nlpub:` to control).
    pub fn lock_public(&self) -> Option<NlPublic> {
        self.lock_key.as_ref().map(|k| NlPublic(tinytail_core::tka::verify::public_of(&k.0)))
    }
}

/// A named record's name and value.
pub type NamedRecord = (String, Vec<u8>);

/// Where the state lives.
pub trait StateStore {
    fn load(&self) -> Result<State, String>;
    fn save(&self, state: &State) -> Result<(), String>;
}

/// The flash store, opened read-write for the agent's lifetime.
pub struct FlashState {
    store: Mutex<Store<DeviceFlash>>,
}

impl FlashState {
    /// Opens (and recovers) the store of the board, or the one at `override_path`.
    pub fn open(storage: &Storage, override_path: Option<&Path>) -> Result<Self, String> {
        let store = store::open(storage, override_path).map_err(|e| format!("opening the store: {e}"))?;
        for warning in store.warnings() {
            crate::log::log(&format!("store: {warning}"));
        }
        Ok(FlashState { store: Mutex::new(store) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store<DeviceFlash>> {
        // A panic while holding the lock would already have aborted the process (panic=abort).
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes the tailnet-lock key alone (made on the first run, before any other record).
    pub fn save_lock_key(&self, key: &PrivateKey) -> Result<(), String> {
        let mut tx = Transaction::new();
        tx.put(Record::TailnetLockKey, &key.0).map_err(|e| format!("store: {e}"))?;
        self.lock().commit(&tx).map_err(|e| format!("store: {e}"))
    }

    /// One config record outside [`State`] (the web page's credentials).
    pub fn get_config(&self, config: ConfigKey) -> Option<Vec<u8>> {
        self.lock().get(Record::Config(config)).map(<[u8]>::to_vec)
    }

    /// The tailnet-lock records: the metadata record and every stored AUM (name, value).
    pub fn load_tka(&self) -> (Option<Vec<u8>>, Vec<NamedRecord>) {
        let store = self.lock();
        let meta = store.get(Record::TkaState).map(<[u8]>::to_vec);
        let aums = store
            .info()
            .records
            .iter()
            .filter_map(|r| match r.key.record() {
                Some(Record::TkaAum(name)) => {
                    store.get(Record::TkaAum(name)).map(|v| (name.to_string(), v.to_vec()))
                }
                _ => None,
            })
            .collect();
        (meta, aums)
    }

    /// Applies tailnet-lock changes: AUM puts and deletes in transactions of at most
    /// `TKA_TRANSACTION_BYTES` (a frame must fit one erase block), then the metadata last, so a
    /// power cut leaves either the old metadata over a superset of its AUMs (extra AUMs are
    /// verified ones and harmless) or the new state.
    pub fn save_tka(
        &self,
        puts: &[(String, Vec<u8>)],
        deletes: &[String],
        meta: Option<&[u8]>,
    ) -> Result<(), String> {
        let err = |e: StoreError| format!("store: {e}");
        let mut store = self.lock();
        let mut tx = Transaction::new();
        let mut bytes = 0;
        for (name, value) in puts {
            if bytes + value.len() > TKA_TRANSACTION_BYTES && !tx.is_empty() {
                store.commit(&tx).map_err(err)?;
                (tx, bytes) = (Transaction::new(), 0);
            }
            tx.put(Record::TkaAum(name), value).map_err(err)?;
            bytes += value.len() + name.len();
        }
        if !tx.is_empty() {
            store.commit(&tx).map_err(err)?;
        }
        let mut tx = Transaction::new();
        put_or_delete(&mut tx, Record::TkaState, meta).map_err(err)?;
        store.commit(&tx).map_err(err)?;
        for chunk in deletes.chunks(64) {
            let mut tx = Transaction::new();
            for name in chunk {
                tx.delete(Record::TkaAum(name)).map_err(err)?;
            }
            store.commit(&tx).map_err(err)?;
        }
        Ok(())
    }

    /// The stored ACME account (cert::acme's JSON: directory, account URL and account key).
    pub fn acme_account(&self) -> Option<String> {
        self.lock().get(Record::AcmeAccountKey).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// A domain's stored certificate: the chain (PEM) and its key (PKCS#8 DER), if both exist.
    pub fn certificate(&self, domain: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let store = self.lock();
        let chain = store.get(Record::Certificate(domain))?.to_vec();
        let key = store.get(Record::CertificateKey(domain))?.to_vec();
        Some((chain, key))
    }

    /// The domains with a stored certificate.
    pub fn certificate_domains(&self) -> Vec<String> {
        let store = self.lock();
        store
            .info()
            .records
            .iter()
            .filter_map(|r| match r.key.record() {
                Some(Record::Certificate(name)) => Some(name.to_string()),
                _ => None,
            })
            .collect()
    }

    /// One issuance in one transaction: the chain, its key and (when the issuance made one) the
    /// ACME account, so a power cut leaves the old certificate or the whole new one.
    pub fn save_issuance(
        &self,
        account: Option<&str>,
        domain: &str,
        chain: &[u8],
        key: &[u8],
    ) -> Result<(), String> {
        let err = |e: StoreError| format!("store: {e}");
        let mut tx = Transaction::new();
        if let Some(account) = account {
            tx.put(Record::AcmeAccountKey, account.as_bytes()).map_err(err)?;
        }
        tx.put(Record::Certificate(domain), chain).map_err(err)?;
        tx.put(Record::CertificateKey(domain), key).map_err(err)?;
        self.lock().commit(&tx).map_err(err)
    }

    /// Writes (or with `None` deletes) one config record outside [`State`], in its own
    /// transaction.
    pub fn put_config(&self, config: ConfigKey, value: Option<&[u8]>) -> Result<(), String> {
        let mut tx = Transaction::new();
        put_or_delete(&mut tx, Record::Config(config), value).map_err(|e| format!("store: {e}"))?;
        self.lock().commit(&tx).map_err(|e| format!("store: {e}"))
    }
}

impl StateStore for FlashState {
    fn load(&self) -> Result<State, String> {
        let store = self.lock();
        let key = |record: Record<'_>| store.get_key32(record).map_err(|e| format!("store: {e}"));
        let text = |config: ConfigKey| {
            store
                .get(Record::Config(config))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let flag = |config: ConfigKey, default: bool| match store.get(Record::Config(config)) {
            Some(v) => v == ON,
            None => default,
        };
        let node_key = key(Record::NodeKey)?.map(PrivateKey);
        let routes = text(ConfigKey::AdvertisedRoutes);
        Ok(State {
            machine_key: key(Record::MachineKey)?.map(PrivateKey),
            registered: node_key.is_some(),
            want_running: flag(ConfigKey::WantRunning, node_key.is_some()),
            node_key,
            old_node_key: key(Record::PreviousNodeKey)?.map(NodePublic),
            prefs: Prefs {
                login_server: text(ConfigKey::LoginServer),
                hostname: text(ConfigKey::Hostname),
                advertise_routes: routes.split(',').filter(|r| !r.is_empty()).map(str::to_string).collect(),
                advertise_exit_node: flag(ConfigKey::ExitNode, false),
                snat_subnet_routes: flag(ConfigKey::Snat, true),
                accept_routes: flag(ConfigKey::AcceptRoutes, false),
            },
            node_id: None,
            lock_key: key(Record::TailnetLockKey)?.map(PrivateKey),
        })
    }

    /// One transaction: keys and prefs change together or not at all, even on a power cut.
    /// Unchanged records are not rewritten (the store skips them).
    fn save(&self, state: &State) -> Result<(), String> {
        let err = |e: StoreError| format!("store: {e}");
        let mut tx = Transaction::new();
        put_or_delete(&mut tx, Record::MachineKey, state.machine_key.as_ref().map(|k| &k.0[..]))
            .map_err(err)?;
        let node_key = state.node_key.as_ref().filter(|_| state.registered).map(|k| &k.0[..]);
        put_or_delete(&mut tx, Record::NodeKey, node_key).map_err(err)?;
        put_or_delete(&mut tx, Record::PreviousNodeKey, state.old_node_key.as_ref().map(|k| &k.0[..]))
            .map_err(err)?;
        put_or_delete(&mut tx, Record::TailnetLockKey, state.lock_key.as_ref().map(|k| &k.0[..]))
            .map_err(err)?;
        let prefs = &state.prefs;
        let texts = [
            (ConfigKey::LoginServer, prefs.login_server.clone()),
            (ConfigKey::Hostname, prefs.hostname.clone()),
            (ConfigKey::AdvertisedRoutes, prefs.advertise_routes.join(",")),
        ];
        for (config, value) in &texts {
            let value = Some(value.as_bytes()).filter(|v| !v.is_empty());
            put_or_delete(&mut tx, Record::Config(*config), value).map_err(err)?;
        }
        let flag = |on: bool| if on { ON } else { OFF };
        tx.put(Record::Config(ConfigKey::ExitNode), flag(prefs.advertise_exit_node)).map_err(err)?;
        tx.put(Record::Config(ConfigKey::Snat), flag(prefs.snat_subnet_routes)).map_err(err)?;
        tx.put(Record::Config(ConfigKey::AcceptRoutes), flag(prefs.accept_routes)).map_err(err)?;
        tx.put(Record::Config(ConfigKey::WantRunning), flag(state.want_running)).map_err(err)?;
        self.lock().commit(&tx).map_err(err)
    }
}

fn put_or_delete(tx: &mut Transaction, record: Record<'_>, value: Option<&[u8]>) -> Result<(), StoreError> {
    match value {
        Some(v) => tx.put(record, v).map(|_| ()),
        None => tx.delete(record).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_image(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tinytail-state-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("state.img")
    }

    fn open(path: &Path) -> FlashState {
        FlashState::open(&Storage::File("/nonexistent/unused.img"), Some(path)).unwrap()
    }

    #[test]
    fn empty_store_is_an_empty_state() {
        let path = temp_image("empty");
        let state = open(&path).load().unwrap();
        assert!(state.machine_key.is_none() && !state.registered && !state.want_running);
        assert!(state.prefs.snat_subnet_routes, "SNAT defaults to on");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn keys_and_prefs_survive_a_reopen() {
        let path = temp_image("roundtrip");
        let state = State {
            machine_key: Some(PrivateKey([1; 32])),
            node_key: Some(PrivateKey::clamped([2; 32])),
            old_node_key: Some(NodePublic([3; 32])),
            prefs: Prefs {
                login_server: "https://control.tinytail.test".into(),
                hostname: "gw".into(),
                advertise_routes: vec!["192.0.2.0/24".into(), "10.0.0.0/8".into()],
                advertise_exit_node: true,
                snat_subnet_routes: false,
                accept_routes: true,
            },
            registered: true,
            want_running: true,
            node_id: Some(7),
            lock_key: Some(PrivateKey([4; 32])),
        };
        open(&path).save(&state).unwrap();
        let back = open(&path).load().unwrap();
        assert_eq!(back.lock_key, state.lock_key);
        assert_eq!(back.lock_public(), state.lock_public());
        assert_eq!(back.machine_key, state.machine_key);
        assert_eq!(back.node_key, state.node_key);
        assert_eq!(back.old_node_key, state.old_node_key);
        assert_eq!(back.prefs, state.prefs);
        assert!(back.registered && back.want_running);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn down_is_kept_across_a_restart() {
        let path = temp_image("down");
        let mut state = State {
            machine_key: Some(PrivateKey([1; 32])),
            node_key: Some(PrivateKey::clamped([2; 32])),
            registered: true,
            want_running: true,
            ..State::default()
        };
        open(&path).save(&state).unwrap();
        assert!(open(&path).load().unwrap().want_running);
        state.want_running = false;
        open(&path).save(&state).unwrap();
        let back = open(&path).load().unwrap();
        assert!(back.registered && !back.want_running, "a node that was `down` stays down");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn unregistered_node_key_is_not_stored_and_logout_deletes_it() {
        let path = temp_image("logout");
        let store = open(&path);
        let mut state = State {
            machine_key: Some(PrivateKey([1; 32])),
            node_key: Some(PrivateKey([2; 32])),
            ..State::default()
        };
        store.save(&state).unwrap();
        assert!(store.load().unwrap().node_key.is_none(), "a key control has not accepted is not kept");
        state.registered = true;
        store.save(&state).unwrap();
        assert!(store.load().unwrap().registered);
        state.registered = false;
        state.node_key = None;
        store.save(&state).unwrap();
        let back = store.load().unwrap();
        assert!(back.node_key.is_none() && !back.registered);
        assert_eq!(back.machine_key, state.machine_key, "logout keeps the machine key");
        drop(store);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
