//! An in-memory flash for tests, with the semantics of real NOR and the failures of real power:
//! programming can only clear bits, an erase sets a block to 0xFF and is counted, the power can
//! be cut after any byte of a program or erase, and bits can be flipped to model rot.
//!
//! Cut points: every byte a program or erase would change is one point. Cutting at point `k` of
//! a program lets its first `k` bytes land, clears a random subset of the bits byte `k` was to
//! clear, and leaves the rest untouched. Cutting at point `k` of an erase leaves the block's first
//! `k` bytes erased and each later byte either untouched or with random bits already set (an
//! erase drives bits to 1), so headers and frames after the cut may survive, half-erased, or
//! look like garbage. After a cut every operation fails until `power_on`.

use super::flash::{check_access, Flash, FlashError, Geometry};
use super::format::ERASED;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    On,
    /// Cut before the cut point this many points from now.
    CutAfter(u64),
    Off,
}

#[derive(Debug, Clone)]
pub struct SimFlash {
    geometry: Geometry,
    data: Vec<u8>,
    erase_counts: Vec<u32>,
    power: Power,
    /// Cut points passed since the last `reset_cut_points`.
    cut_points: u64,
    bytes_programmed: u64,
    /// xorshift64 state for the partial bytes of cut operations; seeded, so runs repeat.
    rng: u64,
}

impl SimFlash {
    /// A new chip: every byte 0xFF, no erase counted yet.
    pub fn new(geometry: Geometry) -> Result<Self, FlashError> {
        let geometry = geometry.check()?;
        Ok(SimFlash {
            geometry,
            data: vec![ERASED; geometry.total_size() as usize],
            erase_counts: vec![0; geometry.block_count as usize],
            power: Power::On,
            cut_points: 0,
            bytes_programmed: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        })
    }

    /// A chip holding `image` (for example, fuzzer input); shorter images are padded with 0xFF.
    pub fn with_image(geometry: Geometry, image: &[u8]) -> Result<Self, FlashError> {
        let mut flash = Self::new(geometry)?;
        let len = image.len().min(flash.data.len());
        flash.data[..len].copy_from_slice(&image[..len]);
        Ok(flash)
    }

    pub fn image(&self) -> &[u8] {
        &self.data
    }

    /// Erases per block, counting interrupted erases too.
    pub fn erase_counts(&self) -> &[u32] {
        &self.erase_counts
    }

    pub fn bytes_programmed(&self) -> u64 {
        self.bytes_programmed
    }

    /// Seeds the generator that decides the bits of partially written bytes.
    pub fn seed(&mut self, seed: u64) {
        self.rng = seed | 1;
    }

    /// Cuts the power before cut point `points` from now (0: before the next byte changes).
    pub fn cut_power_after(&mut self, points: u64) {
        self.power = Power::CutAfter(points);
    }

    pub fn power_on(&mut self) {
        self.power = Power::On;
    }

    pub fn is_powered(&self) -> bool {
        self.power != Power::Off
    }

    /// Cut points passed since the last reset: how many places a cut could have landed.
    pub fn cut_points(&self) -> u64 {
        self.cut_points
    }

    pub fn reset_cut_points(&mut self) {
        self.cut_points = 0;
    }

    /// Flips one bit, as rot or a disturbed read would.
    pub fn flip_bit(&mut self, offset: u32, bit: u8) {
        if let Some(byte) = self.data.get_mut(offset as usize) {
            *byte ^= 1 << (bit % 8);
        }
    }

    fn powered(&self) -> Result<(), FlashError> {
        if self.power == Power::Off {
            Err(FlashError::PowerLost)
        } else {
            Ok(())
        }
    }

    /// Passes up to `len` cut points of one operation; `Some(i)` if the power goes out at the
    /// `i`th, after which nothing more happens.
    fn cut_within(&mut self, len: usize) -> Option<usize> {
        match self.power {
            Power::CutAfter(n) if n < len as u64 => {
                self.cut_points += n + 1;
                self.power = Power::Off;
                Some(n as usize)
            }
            Power::CutAfter(n) => {
                self.cut_points += len as u64;
                self.power = Power::CutAfter(n - len as u64);
                None
            }
            Power::On | Power::Off => {
                self.cut_points += len as u64;
                None
            }
        }
    }

    fn random_byte(&mut self) -> u8 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 24) as u8
    }
}

impl Flash for SimFlash {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        self.powered()?;
        check_access(self.geometry, offset, buf.len(), false)?;
        let start = offset as usize;
        buf.copy_from_slice(&self.data[start..start + buf.len()]);
        Ok(())
    }

    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError> {
        self.powered()?;
        check_access(self.geometry, offset, data.len(), true)?;
        let start = offset as usize;
        for (i, (&old, &new)) in self.data[start..start + data.len()].iter().zip(data).enumerate() {
            if new & !old != 0 {
                return Err(FlashError::NotErased { offset: offset + i as u32 });
            }
        }
        let cut = self.cut_within(data.len());
        let landed = cut.unwrap_or(data.len());
        for (byte, &new) in self.data[start..start + landed].iter_mut().zip(data) {
            *byte &= new;
        }
        self.bytes_programmed += landed as u64;
        if let Some(i) = cut {
            // The byte being programmed when the power went: some of its bits got cleared.
            let old = self.data[start + i];
            let to_clear = old & !data[i];
            self.data[start + i] = old & !(to_clear & self.random_byte());
            return Err(FlashError::PowerLost);
        }
        Ok(())
    }

    fn erase(&mut self, block: u32) -> Result<(), FlashError> {
        self.powered()?;
        if block >= self.geometry.block_count {
            return Err(FlashError::OutOfRange {
                offset: block.saturating_mul(self.geometry.block_size),
                len: 0,
            });
        }
        self.erase_counts[block as usize] += 1;
        let start = self.geometry.block_start(block) as usize;
        let end = start + self.geometry.block_size as usize;
        let cut = self.cut_within(end - start);
        let erased_end = cut.map_or(end, |i| start + i);
        self.data[start..erased_end].fill(ERASED);
        if cut.is_some() {
            // The rest is half way: each byte untouched or with some bits already driven to 1.
            for j in erased_end..end {
                if self.random_byte() & 1 == 1 {
                    let raised = self.random_byte();
                    self.data[j] |= raised;
                }
            }
            return Err(FlashError::PowerLost);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), FlashError> {
        self.powered()
    }
}

/// Small geometries for fuzzing, so a few hundred input bytes cover several blocks and headers.
pub const FUZZ_GEOMETRIES: [Geometry; 4] = [
    Geometry { block_size: 128, block_count: 2, write_size: 1 },
    Geometry { block_size: 256, block_count: 4, write_size: 1 },
    Geometry { block_size: 192, block_count: 3, write_size: 1 },
    Geometry { block_size: 256, block_count: 3, write_size: 8 },
];

/// The property the `store_recovery` fuzz target checks, shared with the test that replays its
/// corpus. Byte 0 of `data` picks a geometry, the rest is the flash image (padded with 0xFF).
/// Recovery must not panic; a read-only open must write nothing; a store that opens must take a
/// write that survives a reopen without changing any other record.
pub fn check_recovery_of_image(data: &[u8]) {
    use super::{ConfigKey, Record, Store, StoreError};

    let Some((&pick, image)) = data.split_first() else { return };
    let geometry = FUZZ_GEOMETRIES[pick as usize % FUZZ_GEOMETRIES.len()];
    let Ok(flash) = SimFlash::with_image(geometry, image) else { return };

    if let Ok(store) = Store::open_read_only(flash.clone()) {
        assert_eq!(store.flash().image(), flash.image(), "read-only open wrote to flash");
        let _ = store.info();
    }
    let Ok(mut store) = Store::open(flash) else { return };
    let hostname = Record::Config(ConfigKey::Hostname);
    match store.put(hostname, b"fuzz") {
        Ok(()) => {}
        Err(StoreError::Full { .. } | StoreError::TooLarge { .. } | StoreError::SequenceExhausted) => return,
        Err(e) => panic!("write after recovery failed: {e}"),
    }
    let expected = contents(&store);
    let reopened = Store::open(store.into_flash()).expect("a store we just wrote reopens");
    assert_eq!(reopened.get(hostname), Some(&b"fuzz"[..]));
    assert_eq!(contents(&reopened), expected, "reopening changed the records");
}

/// Every record with its value (unknown kinds by length only: they are never returned).
fn contents<F: Flash>(store: &super::Store<F>) -> Vec<(super::RecordKey, usize, Option<Vec<u8>>)> {
    let info = store.info();
    info.records
        .into_iter()
        .map(|r| {
            let value = r.key.record().and_then(|record| store.get(record)).map(<[u8]>::to_vec);
            (r.key, r.len, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEOMETRY: Geometry = Geometry { block_size: 256, block_count: 4, write_size: 1 };

    #[test]
    fn programming_only_clears_bits() {
        let mut flash = SimFlash::new(GEOMETRY).unwrap();
        flash.program(10, &[0x0F]).unwrap();
        flash.program(10, &[0x07]).unwrap();
        assert!(matches!(flash.program(10, &[0x1F]), Err(FlashError::NotErased { offset: 10 })));
        assert_eq!(flash.image()[10], 0x07);
    }

    #[test]
    fn erase_sets_ff_and_counts() {
        let mut flash = SimFlash::new(GEOMETRY).unwrap();
        flash.program(300, &[0; 8]).unwrap();
        flash.erase(1).unwrap();
        assert!(flash.image()[256..512].iter().all(|&b| b == 0xFF));
        assert_eq!(flash.erase_counts(), &[0, 1, 0, 0]);
    }

    #[test]
    fn a_cut_lands_a_prefix_and_then_refuses_everything() {
        let mut flash = SimFlash::new(GEOMETRY).unwrap();
        flash.cut_power_after(3);
        assert!(matches!(flash.program(0, &[0; 8]), Err(FlashError::PowerLost)));
        assert_eq!(&flash.image()[..3], &[0, 0, 0]);
        assert_eq!(&flash.image()[4..8], &[0xFF; 4]);
        assert!(matches!(flash.read(0, &mut [0; 1]), Err(FlashError::PowerLost)));
        flash.power_on();
        assert!(flash.read(0, &mut [0; 1]).is_ok());
    }

    #[test]
    fn a_cut_erase_leaves_a_prefix_erased() {
        let mut flash = SimFlash::new(GEOMETRY).unwrap();
        flash.program(0, &[0; 256]).unwrap();
        flash.cut_power_after(100);
        assert!(matches!(flash.erase(0), Err(FlashError::PowerLost)));
        assert!(flash.image()[..100].iter().all(|&b| b == 0xFF));
        assert!(flash.image()[100..256].iter().any(|&b| b != 0xFF));
    }

    #[test]
    fn misaligned_and_out_of_range_accesses_are_errors() {
        let mut flash = SimFlash::new(Geometry { write_size: 4, ..GEOMETRY }).unwrap();
        assert!(matches!(flash.program(2, &[0; 4]), Err(FlashError::Misaligned { .. })));
        assert!(matches!(flash.read(1020, &mut [0; 8]), Err(FlashError::OutOfRange { .. })));
        assert!(matches!(flash.erase(4), Err(FlashError::OutOfRange { .. })));
    }
}
