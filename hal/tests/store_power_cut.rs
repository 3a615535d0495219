//! Power cuts: random operation sequences on the simulated flash, with the power cut at every
//! byte of every program and erase (including the store's first format of a blank chip), then
//! recovery. After recovery the state must be exactly the one before the interrupted operation
//! or, if that operation would have committed, the one after it: every committed transaction
//! fully present, no uncommitted one partly visible. The recovered store must then take a write
//! and reopen to the same state, and a second cut at a random point of recovery's own repairs
//! must recover as well.
//!
//! Size: `TINYTAIL_TEST_SCALE` times 2000 sequences (at least 4) of up to 16 operations. The scale defaults to
//! 1 in an optimized build (`cargo test --release`: the figures in the README) and to 0.01 in a
//! debug build. The test command (scripts/test) states it: 0.25 on the host in release (500
//! sequences, about 1.4 million cut points, under a minute), 0.01 under each qemu (20), and it
//! leaves this test out of the debug `cargo test --workspace`. It prints the sequences, cut
//! points and second cuts it ran (`power-cut: ...`; `--nocapture` shows it).

mod common;

use common::{scale_or, scaled_by, state_of, Rng, State, UNIVERSE};
use tinytail_hal::store::sim::SimFlash;
use tinytail_hal::store::{ConfigKey, FlashError, Geometry, Record, Store, StoreError, Transaction};

/// Small blocks, so garbage collection, the spare block and full-store refusals happen every few
/// operations; one geometry with a write size above one byte.
const GEOMETRIES: [Geometry; 3] = [
    Geometry { block_size: 256, block_count: 4, write_size: 1 },
    Geometry { block_size: 192, block_count: 3, write_size: 1 },
    Geometry { block_size: 256, block_count: 2, write_size: 8 },
];
const FULL_SEQUENCES: usize = 2000;
/// Fewest sequences at any scale (qemu-mipsel runs about a minute per sequence, debug build).
const MIN_SEQUENCES: usize = 4;
const MAX_OPS: usize = 16;
/// Recoveries that had repairs to make get a second cut during them one time in this many.
const RECOVERY_CUT_EVERY: u64 = 3;
/// Failures printed in full; the rest are only counted.
const SHOWN_FAILURES: usize = 10;
const HOSTNAME: Record<'static> = Record::Config(ConfigKey::Hostname);
/// Default scale of a debug build: unoptimized, the full run takes about an hour.
const DEBUG_SCALE: f64 = 0.01;

fn scale() -> f64 {
    scale_or(if cfg!(debug_assertions) { DEBUG_SCALE } else { 1.0 })
}

#[derive(Debug, Clone)]
enum Op {
    /// Opening the chip: formats the blank blocks of a new one.
    Open,
    Put(usize, Vec<u8>),
    Delete(usize),
    /// Several puts and deletes in one transaction.
    Commit(Vec<(usize, Option<Vec<u8>>)>),
}

#[derive(Debug, Default)]
struct Totals {
    sequences: usize,
    operations: usize,
    /// Operations the store refused (full or too large) without committing.
    refused: usize,
    cut_points: u64,
    /// Second cuts, during recovery's repairs.
    recovery_cuts: u64,
    failures: usize,
}

#[test]
fn every_committed_transaction_survives_a_cut_at_every_byte() {
    let sequences = scaled_by(scale(), FULL_SEQUENCES, MIN_SEQUENCES);
    let mut totals = Totals::default();
    for seed in 0..sequences as u64 {
        run_sequence(seed, &mut totals);
    }
    println!(
        "power-cut: scale={} sequences={} operations={} refused={} cut_points={} recovery_cuts={} failures={}",
        scale(),
        totals.sequences,
        totals.operations, totals.refused, totals.cut_points, totals.recovery_cuts, totals.failures
    );
    assert!(
        totals.cut_points > totals.sequences as u64 * 100,
        "too few cut points to mean anything: {totals:?}"
    );
    assert!(totals.recovery_cuts > 0 && totals.refused > 0, "{totals:?}");
    assert_eq!(totals.failures, 0, "{totals:?}");
}

fn run_sequence(seed: u64, totals: &mut Totals) {
    let mut rng = Rng::new(seed);
    let geometry = GEOMETRIES[seed as usize % GEOMETRIES.len()];
    let ops: Vec<Op> =
        std::iter::once(Op::Open).chain((0..1 + rng.below(MAX_OPS)).map(|_| random_op(&mut rng))).collect();
    totals.sequences += 1;

    let blank = SimFlash::new(geometry).expect("test geometry is valid");
    // The store before each operation, and the state it holds.
    let mut before: Option<Store<SimFlash>> = None;
    let mut state = State::new();
    for (step, op) in ops.iter().enumerate() {
        totals.operations += 1;
        // Run once without a cut to learn its cut points and whether it commits.
        let (after, committed, points) = match (&before, op) {
            (None, _) => {
                let mut flash = blank.clone();
                flash.reset_cut_points();
                let store = Store::open(flash).expect("a blank chip opens");
                let points = store.flash().cut_points();
                (store, true, points)
            }
            (Some(store), _) => {
                let mut store = store.clone();
                store.flash_mut().reset_cut_points();
                let committed = apply(&mut store, op).expect("no cut, no error");
                let points = store.flash().cut_points();
                (store, committed, points)
            }
        };
        if !committed {
            totals.refused += 1;
        }
        let next_state = if committed { model_after(&state, op) } else { state.clone() };
        if state_of(&after) != next_state {
            fail(
                totals,
                seed,
                step,
                None,
                format!("without a cut: {:?}, expected {next_state:?}", state_of(&after)),
            );
        }
        let allowed: Vec<&State> = if committed { vec![&state, &next_state] } else { vec![&state] };
        for point in 0..points {
            totals.cut_points += 1;
            let cut_flash = match &before {
                None => cut_open(&blank, point, &mut rng),
                Some(store) => cut_op(store, op, point, &mut rng),
            };
            if let Err(why) = cut_flash.and_then(|flash| check_recovery(flash, &allowed, &mut rng, totals)) {
                fail(totals, seed, step, Some(point), why);
            }
        }
        before = Some(after);
        state = next_state;
    }
}

/// The chip after opening `blank` with the power cut at `point`.
fn cut_open(blank: &SimFlash, point: u64, rng: &mut Rng) -> Result<SimFlash, String> {
    let mut flash = blank.clone();
    flash.cut_power_after(point);
    flash.seed(rng.next());
    match Store::open(&mut flash) {
        Err(StoreError::Flash(FlashError::PowerLost)) => Ok(flash),
        other => Err(format!("open with a cut did not lose power: {:?}", other.map(|_| ()))),
    }
}

/// The chip after running `op` on `before` with the power cut at `point`.
fn cut_op(before: &Store<SimFlash>, op: &Op, point: u64, rng: &mut Rng) -> Result<SimFlash, String> {
    let mut store = before.clone();
    store.flash_mut().cut_power_after(point);
    store.flash_mut().seed(rng.next());
    match apply(&mut store, op) {
        Err(StoreError::Flash(FlashError::PowerLost)) => Ok(store.into_flash()),
        other => Err(format!("operation with a cut did not lose power: {other:?}")),
    }
}

/// Powers the cut chip on, recovers and checks the state and that the store still takes a write;
/// if recovery had repairs to make, cuts once more at a random point of them and checks again.
fn check_recovery(
    mut flash: SimFlash,
    allowed: &[&State],
    rng: &mut Rng,
    totals: &mut Totals,
) -> Result<(), String> {
    flash.power_on();
    flash.reset_cut_points();
    let mut recovered = Store::open(flash.clone()).map_err(|e| format!("recovery failed: {e}"))?;
    let repair_points = recovered.flash().cut_points();
    let state = state_of(&recovered);
    if !allowed.contains(&&state) {
        return Err(format!("recovered {state:?}, allowed {allowed:?}; warnings {:?}", recovered.warnings()));
    }
    let mut expected = state;
    let hostname = UNIVERSE.iter().position(|r| *r == HOSTNAME).expect("hostname is in the universe");
    match recovered.put(HOSTNAME, b"after-the-cut") {
        Ok(()) => {
            expected.insert(hostname, b"after-the-cut".to_vec());
        }
        Err(StoreError::Full { .. }) => {}
        Err(e) => return Err(format!("write after recovery failed: {e}")),
    }
    let reopened =
        Store::open(recovered.into_flash()).map_err(|e| format!("reopen after recovery failed: {e}"))?;
    if state_of(&reopened) != expected {
        return Err(format!(
            "after recovery and one write: {:?}, expected {expected:?}",
            state_of(&reopened)
        ));
    }

    if repair_points > 0 && rng.next().is_multiple_of(RECOVERY_CUT_EVERY) {
        flash.cut_power_after(rng.next() % repair_points);
        flash.seed(rng.next());
        match Store::open(&mut flash) {
            Err(StoreError::Flash(FlashError::PowerLost)) => {}
            other => return Err(format!("recovery with a cut did not lose power: {:?}", other.map(|_| ()))),
        }
        totals.recovery_cuts += 1;
        flash.power_on();
        let twice = Store::open(flash).map_err(|e| format!("recovery after a cut recovery failed: {e}"))?;
        let state = state_of(&twice);
        if !allowed.contains(&&state) {
            return Err(format!(
                "recovered twice {state:?}, allowed {allowed:?}; warnings {:?}",
                twice.warnings()
            ));
        }
    }
    Ok(())
}

fn fail(totals: &mut Totals, seed: u64, step: usize, point: Option<u64>, why: String) {
    totals.failures += 1;
    if totals.failures <= SHOWN_FAILURES {
        println!("FAILURE seed {seed} operation {step} cut point {point:?}: {why}");
    }
}

fn random_value(rng: &mut Rng) -> Vec<u8> {
    // Mostly small; sometimes large enough to fill the store or not fit a block.
    let len = match rng.below(10) {
        0 => 60 + rng.below(160),
        1 => 0,
        _ => 1 + rng.below(40),
    };
    rng.bytes(len)
}

fn random_op(rng: &mut Rng) -> Op {
    match rng.below(10) {
        0..=4 => Op::Put(rng.below(UNIVERSE.len()), random_value(rng)),
        5 => Op::Delete(rng.below(UNIVERSE.len())),
        _ => Op::Commit(
            (0..2 + rng.below(3))
                .map(|_| {
                    let record = rng.below(UNIVERSE.len());
                    (record, if rng.below(5) == 0 { None } else { Some(random_value(rng)) })
                })
                .collect(),
        ),
    }
}

/// Runs `op`: `Ok(true)` if it committed, `Ok(false)` if the store refused it (full, too large)
/// without committing, `Err` otherwise (a power loss).
fn apply(store: &mut Store<SimFlash>, op: &Op) -> Result<bool, StoreError> {
    let result = match op {
        Op::Open => return Ok(true),
        Op::Put(record, value) => store.put(UNIVERSE[*record], value),
        Op::Delete(record) => store.delete(UNIVERSE[*record]),
        Op::Commit(changes) => {
            let mut tx = Transaction::new();
            for (record, value) in changes {
                match value {
                    Some(value) => tx.put(UNIVERSE[*record], value)?,
                    None => tx.delete(UNIVERSE[*record])?,
                };
            }
            store.commit(&tx)
        }
    };
    match result {
        Ok(()) => Ok(true),
        Err(StoreError::Full { .. } | StoreError::TooLarge { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn model_after(state: &State, op: &Op) -> State {
    let mut next = state.clone();
    let mut set = |record: usize, value: &Option<Vec<u8>>| match value {
        Some(v) => {
            next.insert(record, v.clone());
        }
        None => {
            next.remove(&record);
        }
    };
    match op {
        Op::Open => {}
        Op::Put(record, value) => set(*record, &Some(value.clone())),
        Op::Delete(record) => set(*record, &None),
        Op::Commit(changes) => changes.iter().for_each(|(record, value)| set(*record, value)),
    }
    next
}
