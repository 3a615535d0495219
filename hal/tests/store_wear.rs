//! Wear: 100,000 config updates on a 4-block store beside keys, a TKA state and a certificate.
//! Erase counts must stay within 2x of each other; the write amplification (flash bytes
//! programmed / value bytes the caller asked to store) is printed for the README.

mod common;

use common::{scaled, Rng};
use tinytail_hal::store::sim::SimFlash;
use tinytail_hal::store::{ConfigKey, Geometry, Record, Store};

/// 4 blocks of 4 KiB: a small NOR partition's erase blocks.
const GEOMETRY: Geometry = Geometry { block_size: 4096, block_count: 4, write_size: 1 };
const FULL_UPDATES: usize = 100_000;

#[test]
fn erase_counts_stay_within_twice_of_each_other() {
    let updates = scaled(FULL_UPDATES, 2_000);
    let mut rng = Rng::new(42);
    let mut store = Store::open(SimFlash::new(GEOMETRY).expect("valid geometry")).expect("blank chip opens");
    // The long-lived records a router keeps: they move with every rotation.
    store.put(Record::MachineKey, &rng.bytes(32)).expect("fits");
    store.put(Record::NodeKey, &rng.bytes(32)).expect("fits");
    store.put(Record::PreviousNodeKey, &rng.bytes(32)).expect("fits");
    store.put(Record::TkaState, &rng.bytes(600)).expect("fits");
    store.put(Record::Certificate("gw.tail1234.ts.net"), &rng.bytes(1300)).expect("fits");
    store.put(Record::CertificateKey("gw.tail1234.ts.net"), &rng.bytes(120)).expect("fits");

    let start_bytes = store.flash().bytes_programmed();
    let mut payload = 0u64;
    let mut last = Vec::new();
    for i in 0..updates {
        // Advertised routes as the CLI writes them: a few CIDRs, changing each time.
        let routes = format!("10.{}.{}.0/24,192.168.{}.0/24", i % 251, i % 13, rng.below(256));
        store.put(Record::Config(ConfigKey::AdvertisedRoutes), routes.as_bytes()).expect("update fits");
        payload += routes.len() as u64;
        last = routes.into_bytes();
    }
    let programmed = store.flash().bytes_programmed() - start_bytes;
    let counts = store.flash().erase_counts().to_vec();
    let info_counts: Vec<u32> = store.info().blocks.iter().map(|b| b.erase_count).collect();
    let (min, max) = (counts.iter().copied().min().unwrap_or(0), counts.iter().copied().max().unwrap_or(0));
    let amplification = programmed as f64 / payload as f64;
    println!(
        "wear: updates={updates} blocks={} erase_counts={counts:?} min={min} max={max} spread={:.3} \
         flash_bytes={programmed} payload_bytes={payload} write_amplification={amplification:.2}",
        GEOMETRY.block_count,
        max as f64 / min.max(1) as f64
    );
    assert!(min > 0, "every block must take part in the rotation");
    assert!(max <= 2 * min, "erase counts {counts:?} spread more than 2x");
    // The headers carry the same counts the chip saw (the first format is not an erase).
    assert_eq!(info_counts, counts);
    let reopened = Store::open(store.into_flash()).expect("reopens");
    assert_eq!(reopened.get(Record::Config(ConfigKey::AdvertisedRoutes)), Some(last.as_slice()));
    assert!(reopened.get(Record::Certificate("gw.tail1234.ts.net")).is_some());
}
