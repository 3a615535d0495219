//! The flash store: keys, tailnet-lock state, certificates and config, kept power-safe and
//! wear-levelled on raw flash.
//!
//! A router keeps its state in a few MB of NOR flash that wears out when rewritten and loses power
//! whenever someone pulls the plug. So the store is a log: every change is appended, never
//! rewritten in place, and a change counts only once its CRC-checked frame is completely on flash.
//!
//! Layout of this module, traits first: [`flash`] (the raw-flash trait), [`format`] (the bytes on
//! flash), [`record`] (the typed key space), [`log`] (the store over any flash), then the
//! implementations side by side: [`linux`] (an MTD partition or an image file) and [`sim`] (in
//! memory, with power cuts and bit flips, for tests).
//!
//! # Using it
//!
//! ```no_run
//! use tinytail_hal::board::Storage;
//! use tinytail_hal::store::{self, ConfigKey, Record, Transaction};
//! # fn main() -> Result<(), store::StoreError> {
//! # let board_storage = Storage::File("/var/lib/tinytail/state.img");
//! // `board.storage` in the agent; `--state PATH` as the override.
//! let mut store = store::open(&board_storage, None)?;
//! for warning in store.warnings() {
//!     eprintln!("store: {warning}");
//! }
//! let node_key = store.get_key32(Record::NodeKey)?;
//! let mut rotate = Transaction::new();
//! rotate.put(Record::NodeKey, &[1; 32])?.put(Record::PreviousNodeKey, &node_key.unwrap_or([0; 32]))?;
//! store.commit(&rotate)?; // both or neither, even if the power goes now
//! store.put(Record::Config(ConfigKey::Hostname), b"gw")?;
//! # Ok(()) }
//! ```
//!
//! # On-flash format, version 1
//!
//! All integers are little-endian. CRC is CRC-32/ISO-HDLC (zlib's). The flash is a row of erase
//! blocks of one size; every block starts with a header written right after it is erased:
//!
//! ```text
//! block header (24 bytes)              frame
//!  0  magic "TTsb"                      0  magic "Tf"
//!  4  format version (1)                2  format version (1)
//!  5  reserved (0, 3 bytes)             3  flags: bit 0 = garbage-collection copy
//!  8  block size u32                    4  sequence u32 (grows by one per frame, store-wide)
//! 12  block sequence u32                8  body length u32
//! 16  erase count u32                  12  header CRC u32 over bytes 0..12
//! 20  CRC u32 over bytes 0..20         16  body: entries, back to back
//!                                      16+len  commit CRC u32 over header and body
//!                                      then 0xFF up to a multiple of the write size
//! entries
//!  put     tag 1, kind u16, name length u8, value length u32, name, value
//!  delete  tag 2, kind u16, name length u8, name
//!  retire  tag 3, block sequence u32: that block (and every older one) holds nothing live
//! ```
//!
//! Frames follow the header at the next write-size boundary, back to back; the rest of the block
//! is 0xFF. A frame is one transaction: its commit CRC is written last (frames are programmed
//! front to back), so a frame cut short by a power failure fails its CRC and none of its entries
//! apply. Record kinds have stable ids ([`RecordKind::id`]); the kind is part of every lookup, so a
//! certificate is never read back as a key.
//!
//! # The log
//!
//! Block sequence numbers grow with every erase, and the log moves through free blocks in that
//! order, so replaying used blocks by sequence and frames by position gives history in order.
//! When the newest block is full the log moves to the next free block, keeping one block spare.
//! When only the spare is left, garbage collection copies the live records of the oldest block
//! to the head (in frames flagged as copies), commits a retire entry for that block with the last
//! copy, and only then erases it, so the only valid copy of a record is never erased. Always
//! collecting the oldest block moves every block through the rotation, which is the wear
//! levelling: erase counts stay within one rotation of each other.
//!
//! # Recovery
//!
//! At open every block is read: headers that are blank, torn or unreadable mark their block for
//! erasing; blocks at or below the newest retire entry are garbage (an erase that was cut short);
//! frames are replayed in order, skipping (with a [`Warning`]) any that fail their CRC or do not
//! parse; a block with unreadable bytes after its last frame takes no more writes. A block out of
//! order with the log (a repeated block sequence, frames not newer than those before it) cannot
//! come from this store, only from altered flash: it is dropped whole and erased, so the state
//! recovery shows is the state that stays. If every block is in use, a garbage collection was cut
//! short after it
//! moved into the spare; its copies (still committed in the original block) are dropped to get
//! the spare back. Nothing read from flash can make recovery panic or loop: every length is
//! bounded by the block it was read from.
//!
//! Known limits: values live in RAM (the sum of live records, at most the capacity); bit rot
//! that breaks a committed frame makes its records fall back to their previous values (reported
//! as a warning, never returned as data); NAND (bad blocks, page-once programming) is refused.

pub mod flash;
pub mod format;
pub mod linux;
pub mod log;
pub mod record;
pub mod sim;

use std::fmt;

pub use flash::{Flash, FlashError, Geometry};
pub use linux::{open, open_read_only, DeviceFlash};
pub use log::{BlockInfo, BlockState, Info, Mode, RecordInfo, Stats, Store, Transaction, Warning};
pub use record::{ConfigKey, Record, RecordKey, RecordKind};

/// Why the store refused.
#[derive(Debug)]
pub enum StoreError {
    Flash(FlashError),
    /// A named record (a certificate) needs a non-empty name.
    EmptyName,
    NameTooLong {
        len: usize,
    },
    /// One transaction must fit one erase block.
    TooLarge {
        size: usize,
        max: usize,
    },
    /// The live records would not fit; nothing was written and every committed record is kept.
    Full {
        needed: usize,
        capacity: usize,
    },
    /// A stored value has the wrong length for its kind.
    WrongLength {
        kind: RecordKind,
        expected: usize,
        found: usize,
    },
    /// The store was opened read-only.
    ReadOnly,
    /// Written by a format version this tinytail does not know; refused rather than erased.
    UnsupportedVersion(u8),
    /// The image was formatted with another erase block size than the device reports.
    GeometryMismatch {
        image: u32,
        device: u32,
    },
    /// An erase reported success but left programmed bytes.
    EraseFailed {
        block: u32,
    },
    /// Four billion commits: the sequence numbers are used up.
    SequenceExhausted,
    /// Another process (a running agent) has the store open for writing.
    Locked(String),
    /// A broken invariant of the store itself, reported rather than panicking.
    Internal(&'static str),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Flash(e) => write!(f, "flash: {e}"),
            StoreError::EmptyName => f.write_str("record name is empty"),
            StoreError::NameTooLong { len } => {
                write!(f, "record name is {len} bytes, at most {} fit", format::MAX_NAME_LEN)
            }
            StoreError::TooLarge { size, max } => {
                write!(f, "transaction of {size} bytes does not fit an erase block ({max} bytes at most)")
            }
            StoreError::Full { needed, capacity } => write!(
                f,
                "store full: records would take {needed} bytes of {capacity}; nothing written, all records kept"
            ),
            StoreError::WrongLength { kind, expected, found } => {
                write!(f, "stored {kind} is {found} bytes, expected {expected}")
            }
            StoreError::ReadOnly => f.write_str("store is open read-only"),
            StoreError::UnsupportedVersion(v) => {
                write!(f, "store was written in format version {v}; this tinytail reads version {}", format::FORMAT_VERSION)
            }
            StoreError::GeometryMismatch { image, device } => {
                write!(f, "store was formatted with {image}-byte erase blocks, the device has {device}")
            }
            StoreError::EraseFailed { block } => write!(f, "erase of block {block} left programmed bytes"),
            StoreError::SequenceExhausted => f.write_str("store sequence numbers exhausted"),
            StoreError::Locked(what) => write!(f, "{what} is in use by another tinytail"),
            StoreError::Internal(what) => write!(f, "store bug: {what}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<FlashError> for StoreError {
    fn from(e: FlashError) -> Self {
        StoreError::Flash(e)
    }
}
