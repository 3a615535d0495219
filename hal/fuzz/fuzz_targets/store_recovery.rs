//! Random flash images into the store's recovery: it must never panic and never loop (run with
//! libFuzzer's `-timeout`), and a store it opens must take a write that survives a reopen.
//!
//! Input: byte 0 picks the geometry, the rest is the flash image (padded with 0xFF).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinytail_hal::store::sim::SimFlash;
use tinytail_hal::store::{ConfigKey, Geometry, Record, Store, StoreError};

/// Small geometries, so that a few hundred input bytes cover several blocks and headers.
const GEOMETRIES: [Geometry; 4] = [
    Geometry { block_size: 128, block_count: 2, write_size: 1 },
    Geometry { block_size: 256, block_count: 4, write_size: 1 },
    Geometry { block_size: 192, block_count: 3, write_size: 1 },
    Geometry { block_size: 256, block_count: 3, write_size: 8 },
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, image)) = data.split_first() else { return };
    let geometry = GEOMETRIES[pick as usize % GEOMETRIES.len()];
    let Ok(flash) = SimFlash::with_image(geometry, image) else { return };

    // Read-only recovery must write nothing.
    if let Ok(store) = Store::open_read_only(flash.clone()) {
        assert_eq!(store.flash().image(), flash.image(), "read-only open wrote to flash");
        let _ = store.info();
    }

    let Ok(mut store) = Store::open(flash) else { return };
    let _ = store.info();
    let before = store.get(Record::NodeKey).map(<[u8]>::to_vec);
    match store.put(Record::Config(ConfigKey::Hostname), b"fuzz") {
        Ok(()) => {}
        Err(StoreError::Full { .. } | StoreError::TooLarge { .. } | StoreError::SequenceExhausted) => return,
        Err(e) => panic!("write after recovery failed: {e}"),
    }
    let reopened = Store::open(store.into_flash()).expect("a store we just wrote reopens");
    assert_eq!(reopened.get(Record::Config(ConfigKey::Hostname)), Some(&b"fuzz"[..]));
    assert_eq!(reopened.get(Record::NodeKey).map(<[u8]>::to_vec), before, "a write changed another record");
});
