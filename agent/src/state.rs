//! The agent's persistent state: machine key, node key, the previous node key, and the prefs
//! `up` set. Interim: a small JSON file (0600, written to a temp file, fsynced, renamed, directory
//! fsynced) until `hal::store` (the power-safe flash store) lands; everything else in the agent
//! goes through [`StateStore`], so switching is a change to this file only.
//!
//! Private keys exist only here and in memory. Auth keys are never part of the state.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tinytail_core::key::{NodePublic, PrivateKey, KEY_LEN};

/// Text prefix of private keys (`ts:types/key/node.go`).
const PRIVATE_PREFIX: &str = "privkey:";

/// The prefs `tinytail up` sets (flags spelled as `tailscale up` spells them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Prefs {
    pub login_server: String,
    pub hostname: String,
    pub advertise_routes: Vec<String>,
    pub advertise_exit_node: bool,
    /// `--snat-subnet-routes` (default true).
    pub snat_subnet_routes: bool,
    pub accept_routes: bool,
}

/// Everything persisted.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub machine_key: Option<PrivateKey>,
    pub node_key: Option<PrivateKey>,
    /// The node key we replaced, sent as `OldNodeKey` until control confirms the new one.
    pub old_node_key: Option<NodePublic>,
    pub prefs: Prefs,
    /// True after a successful registration (until logout).
    pub registered: bool,
    /// `up` sets it, `down` clears it: whether to connect at start.
    pub want_running: bool,
    /// Control's ID for us, for status only.
    pub node_id: Option<i64>,
}

/// Where the state lives.
pub trait StateStore {
    fn load(&self) -> io::Result<State>;
    fn save(&self, state: &State) -> io::Result<()>;
}

/// The interim file store.
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// On-disk form; private keys as `privkey:<hex>`.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct OnDisk {
    machine_key: String,
    node_key: String,
    old_node_key: String,
    prefs: Prefs,
    registered: bool,
    want_running: bool,
    node_id: Option<i64>,
}

impl StateStore for FileStore {
    fn load(&self) -> io::Result<State> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(e),
        };
        let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", self.path.display()))
        })?;
        let bad = |what: &str| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: bad {what}", self.path.display()))
        };
        Ok(State {
            machine_key: parse_private(&disk.machine_key).map_err(|_| bad("machine key"))?,
            node_key: parse_private(&disk.node_key).map_err(|_| bad("node key"))?,
            old_node_key: if disk.old_node_key.is_empty() {
                None
            } else {
                Some(NodePublic::parse(&disk.old_node_key).map_err(|_| bad("old node key"))?)
            },
            prefs: disk.prefs,
            registered: disk.registered,
            want_running: disk.want_running,
            node_id: disk.node_id,
        })
    }

    fn save(&self, state: &State) -> io::Result<()> {
        let disk = OnDisk {
            machine_key: state.machine_key.as_ref().map(private_text).unwrap_or_default(),
            node_key: state.node_key.as_ref().map(private_text).unwrap_or_default(),
            old_node_key: state.old_node_key.map(|k| k.to_string()).unwrap_or_default(),
            prefs: state.prefs.clone(),
            registered: state.registered,
            want_running: state.want_running,
            node_id: state.node_id,
        };
        let bytes = serde_json::to_vec_pretty(&disk).map_err(io::Error::other)?;
        write_atomically(&self.path, &bytes)
    }
}

/// Temp file (0600) + fsync + rename + fsync of the directory: a crash leaves old or new, whole.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(&dir)?.sync_all()
}

fn private_text(key: &PrivateKey) -> String {
    let mut s = String::from(PRIVATE_PREFIX);
    // Writing into a String cannot fail.
    let _ = tinytail_core::key::write_hex(&mut s, &key.0);
    s
}

fn parse_private(text: &str) -> Result<Option<PrivateKey>, ()> {
    if text.is_empty() {
        return Ok(None);
    }
    let hex = text.strip_prefix(PRIVATE_PREFIX).ok_or(())?;
    if hex.len() != 2 * KEY_LEN {
        return Err(());
    }
    let mut out = [0u8; KEY_LEN];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or(())?, 16).map_err(|_| ())?;
    }
    Ok(Some(PrivateKey(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tinytail-state-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir.join("state.json")
    }

    #[test]
    fn missing_file_is_an_empty_state() {
        let store = FileStore::new(temp_path("missing"));
        let state = store.load().unwrap();
        assert!(state.machine_key.is_none() && !state.registered);
    }

    #[test]
    fn round_trip_keeps_keys_and_prefs_and_is_private() {
        let path = temp_path("roundtrip");
        let store = FileStore::new(&path);
        let state = State {
            machine_key: Some(PrivateKey([1; 32])),
            node_key: Some(PrivateKey::clamped([2; 32])),
            old_node_key: Some(NodePublic([3; 32])),
            prefs: Prefs {
                hostname: "gw".into(),
                advertise_routes: vec!["192.0.2.0/24".into()],
                ..Prefs::default()
            },
            registered: true,
            want_running: true,
            node_id: Some(7),
        };
        store.save(&state).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = store.load().unwrap();
        assert_eq!(back.machine_key, state.machine_key);
        assert_eq!(back.node_key, state.node_key);
        assert_eq!(back.old_node_key, state.old_node_key);
        assert_eq!(back.prefs, state.prefs);
        assert_eq!((back.registered, back.want_running, back.node_id), (true, true, Some(7)));
        let _ = fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn corrupt_key_is_an_error_not_a_panic() {
        let path = temp_path("corrupt");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, br#"{"machine_key":"privkey:zz"}"#).unwrap();
        assert!(FileStore::new(&path).load().is_err());
        let _ = fs::remove_dir_all(path.parent().unwrap());
    }
}
