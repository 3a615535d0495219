//! Bit rot: every single-bit flip of every byte of a store's flash, one at a time, then open.
//! A flipped bit inside a record must be caught by a CRC: the store may lose the record's newest
//! value (falling back to an older committed one, or to none) and must say so with a warning,
//! but it must never return bytes that were not committed.

mod common;

use std::collections::BTreeMap;

use common::{scaled, Rng, UNIVERSE};
use tinytail_hal::store::sim::SimFlash;
use tinytail_hal::store::{Geometry, Store};

const GEOMETRY: Geometry = Geometry { block_size: 512, block_count: 4, write_size: 1 };
/// Updates before the flips: enough to move through every block and leave old copies around.
const UPDATES: usize = 60;

#[test]
fn no_single_bit_flip_is_returned_as_data() {
    let mut rng = Rng::new(7);
    let mut store = Store::open(SimFlash::new(GEOMETRY).expect("valid geometry")).expect("blank chip opens");
    // Every value each record ever had, to tell "an older committed value" from rot.
    let mut history: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
    for _ in 0..UPDATES {
        let record = rng.below(UNIVERSE.len());
        let len = 1 + rng.below(48);
        let value = rng.bytes(len);
        store.put(UNIVERSE[record], &value).expect("fits");
        history.entry(record).or_default().push(value);
    }
    let latest: BTreeMap<usize, Vec<u8>> = history
        .iter()
        .map(|(record, values)| (*record, values.last().cloned().unwrap_or_default()))
        .collect();
    let image = store.into_flash();

    // Flip every bit on the host; a deterministic sample of them under qemu.
    let total_bits = image.image().len() * 8;
    let step = (total_bits / scaled(total_bits, 512)).max(1);
    let (mut flips, mut detected, mut harmless, mut fell_back, mut rot_returned) = (0, 0, 0, 0, 0);
    for bit in (0..total_bits).step_by(step) {
        let mut flash = image.clone();
        flash.flip_bit((bit / 8) as u32, (bit % 8) as u8);
        flips += 1;
        let store = match Store::open(flash) {
            Ok(store) => store,
            Err(e) => panic!("open failed after flipping bit {bit}: {e}"),
        };
        let mut changed = false;
        for (i, record) in UNIVERSE.iter().enumerate() {
            let got = store.get(*record);
            if got != latest.get(&i).map(Vec::as_slice) {
                changed = true;
                let committed =
                    got.is_none_or(|v| history.get(&i).is_some_and(|h| h.iter().any(|old| old == v)));
                if !committed {
                    rot_returned += 1;
                    println!("bit {bit}: {record:?} returned bytes never committed");
                }
            }
        }
        match (store.warnings().is_empty(), changed) {
            (false, false) => detected += 1,
            (false, true) => {
                detected += 1;
                fell_back += 1;
            }
            (true, false) => harmless += 1,
            (true, true) => {
                rot_returned += 1;
                println!("bit {bit}: state changed without a warning");
            }
        }
    }
    println!(
        "bit-rot: flips={flips} detected={detected} undetected_harmless={harmless} \
         fell_back_to_older_or_absent={fell_back} corrupt_returned={rot_returned}"
    );
    assert!(flips >= 512);
    assert_eq!(rot_returned, 0);
}
