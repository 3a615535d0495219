//! The raw-flash abstraction the log is written to, with NOR semantics: an erase sets every byte of
//! one erase block to 0xFF, a program can only clear bits, and the unit of both is fixed by the
//! device's [`Geometry`].

use std::fmt;
use std::io;

/// Smallest erase block we accept: the block header plus a few frames must fit.
pub const MIN_BLOCK_SIZE: u32 = 128;
/// Largest erase block we accept; each block is read whole at boot (64 KiB on real NOR).
pub const MAX_BLOCK_SIZE: u32 = 1 << 20;
/// The log needs a block in use and a spare one for garbage collection.
pub const MIN_BLOCK_COUNT: u32 = 2;

/// Shape of a flash device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per erase block.
    pub block_size: u32,
    /// Erase blocks in the store.
    pub block_count: u32,
    /// Smallest programmable unit; offsets and lengths of programs are multiples of it
    /// (1 on NOR).
    pub write_size: u32,
}

impl Geometry {
    /// Checks that the log can live on this shape.
    pub fn check(self) -> Result<Self, FlashError> {
        let sane = self.write_size.is_power_of_two()
            && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.block_size)
            && self.block_size.is_multiple_of(self.write_size)
            && self.block_count >= MIN_BLOCK_COUNT
            && u64::from(self.block_size) * u64::from(self.block_count) <= u64::from(u32::MAX);
        if sane {
            Ok(self)
        } else {
            Err(FlashError::BadGeometry(self))
        }
    }

    /// Total bytes.
    pub fn total_size(self) -> u32 {
        self.block_size * self.block_count
    }

    /// Byte offset of the first byte of `block`.
    pub fn block_start(self, block: u32) -> u32 {
        block * self.block_size
    }
}

/// What a flash device can do. Callers keep offsets within the device and aligned to
/// `write_size`; implementations refuse anything else with an error.
pub trait Flash {
    fn geometry(&self) -> Geometry;
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError>;
    /// Programs `data` at `offset`; the bytes there must be erased (bits only go from 1 to 0).
    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError>;
    /// Sets every byte of one erase block to 0xFF.
    fn erase(&mut self, block: u32) -> Result<(), FlashError>;
    /// Returns once everything programmed or erased so far is durable.
    fn sync(&mut self) -> Result<(), FlashError>;
}

/// A borrowed flash is a flash: a store can run over `&mut SimFlash` and leave the chip to the
/// caller afterwards, even when opening it failed (the power-cut tests cut during recovery).
impl<F: Flash + ?Sized> Flash for &mut F {
    fn geometry(&self) -> Geometry {
        (**self).geometry()
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        (**self).read(offset, buf)
    }
    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError> {
        (**self).program(offset, data)
    }
    fn erase(&mut self, block: u32) -> Result<(), FlashError> {
        (**self).erase(block)
    }
    fn sync(&mut self) -> Result<(), FlashError> {
        (**self).sync()
    }
}

/// Why a flash operation failed.
#[derive(Debug)]
pub enum FlashError {
    /// The access runs past the end of the device.
    OutOfRange { offset: u32, len: usize },
    /// The offset or length is not a multiple of the write size.
    Misaligned { offset: u32, len: usize },
    /// A program would have to turn a 0 bit back into 1 (the simulator refuses it).
    NotErased { offset: u32 },
    /// The simulator cut the power; nothing more happens until it is powered on again.
    PowerLost,
    /// The device's shape cannot hold the log.
    BadGeometry(Geometry),
    /// The operating system refused (file or MTD device).
    Io(io::Error),
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlashError::OutOfRange { offset, len } => {
                write!(f, "{len} bytes at {offset:#x} run past the end of the flash")
            }
            FlashError::Misaligned { offset, len } => {
                write!(f, "{len} bytes at {offset:#x} are not aligned to the write size")
            }
            FlashError::NotErased { offset } => write!(f, "programming over unerased flash at {offset:#x}"),
            FlashError::PowerLost => f.write_str("power lost"),
            FlashError::BadGeometry(g) => write!(
                f,
                "flash geometry unusable for the store: {} blocks of {} bytes, write size {} \
                 (need at least {MIN_BLOCK_COUNT} blocks of {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE} bytes)",
                g.block_count, g.block_size, g.write_size
            ),
            FlashError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FlashError {}

impl From<io::Error> for FlashError {
    fn from(e: io::Error) -> Self {
        FlashError::Io(e)
    }
}

/// Checks an access against a geometry: in range, and (for programs) aligned.
pub(crate) fn check_access(
    geometry: Geometry,
    offset: u32,
    len: usize,
    aligned: bool,
) -> Result<(), FlashError> {
    let end = u64::from(offset) + len as u64;
    if end > u64::from(geometry.total_size()) {
        return Err(FlashError::OutOfRange { offset, len });
    }
    let write_size = geometry.write_size as usize;
    if aligned && (!(offset as usize).is_multiple_of(write_size) || !len.is_multiple_of(write_size)) {
        return Err(FlashError::Misaligned { offset, len });
    }
    Ok(())
}
