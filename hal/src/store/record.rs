//! The typed key space of the store. Each kind has a stable numeric id that is written to flash;
//! a lookup always includes the kind, so one kind is never returned as another.

use std::fmt;

use super::format::MAX_NAME_LEN;
use super::StoreError;

/// Every kind of record tinytail keeps. The ids are part of the on-flash format: never reuse or
/// renumber one; add new kinds with new ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    MachineKey,
    NodeKey,
    /// The node key before the last rotation, kept so the control server can be told about it.
    PreviousNodeKey,
    TailnetLockKey,
    /// Tailnet-lock authority metadata (the AUM the chain starts at, refused state IDs),
    /// serialized by the agent.
    TkaState,
    /// One AUM of the tailnet-lock chain, named by its hash (base32): commit time, then the
    /// AUM's CBOR. Content-addressed, so a sync writes only the new ones.
    TkaAum,
    AcmeAccountKey,
    /// A certificate chain (PEM), named by its domain.
    Certificate,
    /// The private key of the certificate with the same domain.
    CertificateKey,
    ConfigAdvertisedRoutes,
    ConfigSnat,
    ConfigExitNode,
    ConfigHostname,
    ConfigLoginServer,
    ConfigWebPasswordHash,
    /// Whether to connect at start (`up` sets it, `down` clears it).
    ConfigWantRunning,
    ConfigAcceptRoutes,
    /// The executable that publishes ACME DNS-01 records when control cannot (`cert --dns-hook`).
    ConfigDnsHook,
}

impl RecordKind {
    pub const ALL: [RecordKind; 18] = [
        RecordKind::MachineKey,
        RecordKind::NodeKey,
        RecordKind::PreviousNodeKey,
        RecordKind::TailnetLockKey,
        RecordKind::TkaState,
        RecordKind::TkaAum,
        RecordKind::AcmeAccountKey,
        RecordKind::Certificate,
        RecordKind::CertificateKey,
        RecordKind::ConfigAdvertisedRoutes,
        RecordKind::ConfigSnat,
        RecordKind::ConfigExitNode,
        RecordKind::ConfigHostname,
        RecordKind::ConfigLoginServer,
        RecordKind::ConfigWebPasswordHash,
        RecordKind::ConfigWantRunning,
        RecordKind::ConfigAcceptRoutes,
        RecordKind::ConfigDnsHook,
    ];

    /// The id written to flash.
    pub fn id(self) -> u16 {
        match self {
            RecordKind::MachineKey => 0x0001,
            RecordKind::NodeKey => 0x0002,
            RecordKind::PreviousNodeKey => 0x0003,
            RecordKind::TailnetLockKey => 0x0004,
            RecordKind::TkaState => 0x0005,
            RecordKind::AcmeAccountKey => 0x0006,
            RecordKind::Certificate => 0x0007,
            RecordKind::CertificateKey => 0x0008,
            RecordKind::TkaAum => 0x0009,
            RecordKind::ConfigAdvertisedRoutes => 0x0100,
            RecordKind::ConfigSnat => 0x0101,
            RecordKind::ConfigExitNode => 0x0102,
            RecordKind::ConfigHostname => 0x0103,
            RecordKind::ConfigLoginServer => 0x0104,
            RecordKind::ConfigWebPasswordHash => 0x0105,
            RecordKind::ConfigWantRunning => 0x0106,
            RecordKind::ConfigAcceptRoutes => 0x0107,
            RecordKind::ConfigDnsHook => 0x0108,
        }
    }

    pub fn from_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.id() == id)
    }

    /// Secret kinds hold private keys or password hashes. Nothing prints any value, but secret
    /// files and listings are marked so an operator knows what a leak would expose.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            RecordKind::MachineKey
                | RecordKind::NodeKey
                | RecordKind::PreviousNodeKey
                | RecordKind::TailnetLockKey
                | RecordKind::AcmeAccountKey
                | RecordKind::CertificateKey
                | RecordKind::ConfigWebPasswordHash
        )
    }

    /// Kinds with many records, told apart by a name (the certificate's domain).
    pub fn is_named(self) -> bool {
        matches!(self, RecordKind::Certificate | RecordKind::CertificateKey | RecordKind::TkaAum)
    }

    /// Kinds whose value is a 32-byte key.
    pub fn is_key32(self) -> bool {
        matches!(
            self,
            RecordKind::MachineKey
                | RecordKind::NodeKey
                | RecordKind::PreviousNodeKey
                | RecordKind::TailnetLockKey
        )
    }

    pub fn label(self) -> &'static str {
        match self {
            RecordKind::MachineKey => "machine-key",
            RecordKind::NodeKey => "node-key",
            RecordKind::PreviousNodeKey => "previous-node-key",
            RecordKind::TailnetLockKey => "tailnet-lock-key",
            RecordKind::TkaState => "tka-state",
            RecordKind::TkaAum => "tka-aum",
            RecordKind::AcmeAccountKey => "acme-account-key",
            RecordKind::Certificate => "certificate",
            RecordKind::CertificateKey => "certificate-key",
            RecordKind::ConfigAdvertisedRoutes => "config.advertised-routes",
            RecordKind::ConfigSnat => "config.snat",
            RecordKind::ConfigExitNode => "config.exit-node",
            RecordKind::ConfigHostname => "config.hostname",
            RecordKind::ConfigLoginServer => "config.login-server",
            RecordKind::ConfigWebPasswordHash => "config.web-password-hash",
            RecordKind::ConfigWantRunning => "config.want-running",
            RecordKind::ConfigAcceptRoutes => "config.accept-routes",
            RecordKind::ConfigDnsHook => "config.dns-hook",
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The user config entries, each its own record so changing one rewrites only that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigKey {
    AdvertisedRoutes,
    Snat,
    ExitNode,
    Hostname,
    LoginServer,
    WebPasswordHash,
    WantRunning,
    AcceptRoutes,
    DnsHook,
}

/// The address of one record, as the agent names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Record<'a> {
    MachineKey,
    NodeKey,
    PreviousNodeKey,
    TailnetLockKey,
    TkaState,
    /// One AUM, named by its base32 hash.
    TkaAum(&'a str),
    AcmeAccountKey,
    /// The certificate chain for a domain.
    Certificate(&'a str),
    /// The private key for a domain's certificate.
    CertificateKey(&'a str),
    Config(ConfigKey),
}

impl Record<'_> {
    pub fn kind(self) -> RecordKind {
        match self {
            Record::MachineKey => RecordKind::MachineKey,
            Record::NodeKey => RecordKind::NodeKey,
            Record::PreviousNodeKey => RecordKind::PreviousNodeKey,
            Record::TailnetLockKey => RecordKind::TailnetLockKey,
            Record::TkaState => RecordKind::TkaState,
            Record::TkaAum(_) => RecordKind::TkaAum,
            Record::AcmeAccountKey => RecordKind::AcmeAccountKey,
            Record::Certificate(_) => RecordKind::Certificate,
            Record::CertificateKey(_) => RecordKind::CertificateKey,
            Record::Config(ConfigKey::AdvertisedRoutes) => RecordKind::ConfigAdvertisedRoutes,
            Record::Config(ConfigKey::Snat) => RecordKind::ConfigSnat,
            Record::Config(ConfigKey::ExitNode) => RecordKind::ConfigExitNode,
            Record::Config(ConfigKey::Hostname) => RecordKind::ConfigHostname,
            Record::Config(ConfigKey::LoginServer) => RecordKind::ConfigLoginServer,
            Record::Config(ConfigKey::WebPasswordHash) => RecordKind::ConfigWebPasswordHash,
            Record::Config(ConfigKey::WantRunning) => RecordKind::ConfigWantRunning,
            Record::Config(ConfigKey::AcceptRoutes) => RecordKind::ConfigAcceptRoutes,
            Record::Config(ConfigKey::DnsHook) => RecordKind::ConfigDnsHook,
        }
    }
}

/// A record's identity as stored: kind id and name. Unknown kind ids (written by a newer
/// tinytail) are kept as they are, so garbage collection carries them forward untouched.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub(crate) kind: u16,
    pub(crate) name: Vec<u8>,
}

impl RecordKey {
    /// Builds the key for a record the agent names, refusing names that cannot be stored.
    pub fn of(record: Record<'_>) -> Result<Self, StoreError> {
        let name: &[u8] = match record {
            Record::Certificate(name) | Record::CertificateKey(name) | Record::TkaAum(name) => {
                name.as_bytes()
            }
            _ => b"",
        };
        if record.kind().is_named() && name.is_empty() {
            return Err(StoreError::EmptyName);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(StoreError::NameTooLong { len: name.len() });
        }
        Ok(RecordKey { kind: record.kind().id(), name: name.to_vec() })
    }

    /// Parses a key read from flash: the name must agree with the kind (named kinds have a
    /// UTF-8 name, the others none). `None` for a known kind with a wrong name.
    pub(crate) fn parse(kind: u16, name: &[u8]) -> Option<Self> {
        if let Some(known) = RecordKind::from_id(kind) {
            let name_ok = if known.is_named() {
                !name.is_empty() && std::str::from_utf8(name).is_ok()
            } else {
                name.is_empty()
            };
            if !name_ok {
                return None;
            }
        }
        Some(RecordKey { kind, name: name.to_vec() })
    }

    /// The record this key addresses, when this tinytail knows its kind (for listing, e.g. every
    /// certificate's domain from `Store::info`).
    pub fn record(&self) -> Option<Record<'_>> {
        let config = |key| Some(Record::Config(key));
        match self.kind()? {
            RecordKind::MachineKey => Some(Record::MachineKey),
            RecordKind::NodeKey => Some(Record::NodeKey),
            RecordKind::PreviousNodeKey => Some(Record::PreviousNodeKey),
            RecordKind::TailnetLockKey => Some(Record::TailnetLockKey),
            RecordKind::TkaState => Some(Record::TkaState),
            RecordKind::TkaAum => std::str::from_utf8(&self.name).ok().map(Record::TkaAum),
            RecordKind::AcmeAccountKey => Some(Record::AcmeAccountKey),
            RecordKind::Certificate => std::str::from_utf8(&self.name).ok().map(Record::Certificate),
            RecordKind::CertificateKey => std::str::from_utf8(&self.name).ok().map(Record::CertificateKey),
            RecordKind::ConfigAdvertisedRoutes => config(ConfigKey::AdvertisedRoutes),
            RecordKind::ConfigSnat => config(ConfigKey::Snat),
            RecordKind::ConfigExitNode => config(ConfigKey::ExitNode),
            RecordKind::ConfigHostname => config(ConfigKey::Hostname),
            RecordKind::ConfigLoginServer => config(ConfigKey::LoginServer),
            RecordKind::ConfigWebPasswordHash => config(ConfigKey::WebPasswordHash),
            RecordKind::ConfigWantRunning => config(ConfigKey::WantRunning),
            RecordKind::ConfigAcceptRoutes => config(ConfigKey::AcceptRoutes),
            RecordKind::ConfigDnsHook => config(ConfigKey::DnsHook),
        }
    }

    /// The kind, when this tinytail knows it.
    pub fn kind(&self) -> Option<RecordKind> {
        RecordKind::from_id(self.kind)
    }

    pub fn kind_id(&self) -> u16 {
        self.kind
    }

    /// The name (a certificate's domain); empty for single-record kinds.
    pub fn name(&self) -> &str {
        std::str::from_utf8(&self.name).unwrap_or("<not utf-8>")
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            Some(kind) => f.write_str(kind.label())?,
            None => write!(f, "unknown-kind-{:#06x}", self.kind)?,
        }
        if !self.name.is_empty() {
            write!(f, " {}", self.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_ids_are_unique_and_round_trip() {
        for kind in RecordKind::ALL {
            assert_eq!(RecordKind::from_id(kind.id()), Some(kind));
        }
        let mut ids: Vec<u16> = RecordKind::ALL.iter().map(|k| k.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RecordKind::ALL.len());
        assert_eq!(RecordKind::from_id(0xBEEF), None);
    }

    #[test]
    fn names_must_match_the_kind() {
        assert!(matches!(RecordKey::of(Record::Certificate("")), Err(StoreError::EmptyName)));
        let long = "a".repeat(256);
        assert!(matches!(
            RecordKey::of(Record::Certificate(&long)),
            Err(StoreError::NameTooLong { len: 256 })
        ));
        assert!(RecordKey::parse(RecordKind::NodeKey.id(), b"x").is_none());
        assert!(RecordKey::parse(RecordKind::Certificate.id(), b"").is_none());
        assert!(RecordKey::parse(RecordKind::Certificate.id(), &[0xFF]).is_none());
        assert!(RecordKey::parse(0x7777, b"anything").is_some());
    }

    #[test]
    fn keys_map_back_to_the_records_they_address() {
        let records = [
            Record::MachineKey,
            Record::Certificate("r.ts.net"),
            Record::CertificateKey("r.ts.net"),
            Record::Config(ConfigKey::WantRunning),
        ];
        for record in records {
            assert_eq!(RecordKey::of(record).unwrap().record(), Some(record));
        }
        assert_eq!(RecordKey::parse(0x7777, b"").unwrap().record(), None);
    }

    #[test]
    fn a_certificate_and_its_key_are_different_records() {
        let cert = RecordKey::of(Record::Certificate("r.ts.net")).unwrap();
        let key = RecordKey::of(Record::CertificateKey("r.ts.net")).unwrap();
        assert_ne!(cert, key);
    }
}
