//! Helpers shared by the store's property tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;

use tinytail_hal::store::sim::SimFlash;
use tinytail_hal::store::{ConfigKey, Record, Store};

/// `TINYTAIL_TEST_SCALE`, else `default`. The qemu runs set it so the same tests finish in
/// minutes under emulation.
pub fn scale_or(default: f64) -> f64 {
    std::env::var("TINYTAIL_TEST_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(default)
}

/// `TINYTAIL_TEST_SCALE`, else 1 (full size).
pub fn scale() -> f64 {
    scale_or(1.0)
}

/// `full` scaled, never below `floor`.
pub fn scaled(full: usize, floor: usize) -> usize {
    scaled_by(scale(), full, floor)
}

pub fn scaled_by(scale: f64, full: usize, floor: usize) -> usize {
    ((full as f64 * scale) as usize).max(floor)
}

/// xorshift64*: deterministic per seed, so a failure names the seed that reproduces it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The records the property tests touch: every shape of key (single, named, config).
pub const UNIVERSE: [Record<'static>; 13] = [
    Record::MachineKey,
    Record::NodeKey,
    Record::PreviousNodeKey,
    Record::TkaState,
    // Tailnet-lock chain records, named by 52-character AUM hashes as the agent names them.
    Record::TkaAum("ZQJ5K3VNBXHHPCYN5KUGRXTGOVXFQ3SHUGSJ4VLNXEBUL5DCWTUA"),
    Record::TkaAum("AAQCAMBQAA2GMZ3KNFWGCZLSMVZXIYLPORSXG5BAMJSWC4TBMJYQ"),
    // An issuance: the ACME account, a chain and its key, committed together.
    Record::AcmeAccountKey,
    Record::Certificate("a.ts.net"),
    Record::CertificateKey("a.ts.net"),
    Record::Certificate("b.ts.net"),
    Record::Config(ConfigKey::Hostname),
    Record::Config(ConfigKey::AdvertisedRoutes),
    Record::Config(ConfigKey::DnsHook),
];

/// Everything a store returns for the universe, by index into it.
pub type State = BTreeMap<usize, Vec<u8>>;

pub fn state_of(store: &Store<SimFlash>) -> State {
    UNIVERSE.iter().enumerate().filter_map(|(i, r)| store.get(*r).map(|v| (i, v.to_vec()))).collect()
}
