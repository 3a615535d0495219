//! The log-structured store over any [`Flash`]: recovery at open, transactions, garbage
//! collection and wear levelling. The format is described in the `store` module documentation.

use std::collections::BTreeMap;
use std::fmt;

use super::flash::{Flash, Geometry};
use super::format::{
    self, BlockHeader, Entry, FrameRead, HeaderRead, BLOCK_HEADER_LEN, ERASED, FLAG_GC_COPY, FRAME_OVERHEAD,
    PUT_HEADER_LEN, RETIRE_LEN,
};
use super::record::{Record, RecordKey, RecordKind};
use super::StoreError;

/// How many garbage collections one commit may run before it reports the store full: enough to
/// compact every block twice, so it stops only when compaction cannot make room.
const GC_ROUNDS_PER_BLOCK: u32 = 2;

/// Whether the store may write. `store info` opens read-only so it can inspect the flash of a
/// running agent without repairing (and racing) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ReadWrite,
    ReadOnly,
}

/// Several changes that become visible together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    /// Last change per record wins; `None` deletes.
    changes: BTreeMap<RecordKey, Option<Vec<u8>>>,
}

impl Transaction {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, record: Record<'_>, value: &[u8]) -> Result<&mut Self, StoreError> {
        self.changes.insert(RecordKey::of(record)?, Some(value.to_vec()));
        Ok(self)
    }

    pub fn delete(&mut self, record: Record<'_>) -> Result<&mut Self, StoreError> {
        self.changes.insert(RecordKey::of(record)?, None);
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Something recovery found and worked around. None of these lose a committed transaction
/// unless it says so; all of them are worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A frame whose header is intact failed its commit CRC: an interrupted write (harmless: it
    /// was never committed) or bit rot (its records fall back to their previous values).
    CorruptFrame { block: u32, offset: u32, seq: u32 },
    /// A frame passed its CRC but its body does not parse; skipped whole.
    MalformedFrame { block: u32, offset: u32, seq: u32 },
    /// A block whose sequence number repeats another's, or whose frames are not newer than the
    /// log before them: impossible for a log this store wrote, so the flash was altered. The
    /// block is dropped whole and erased, so the state read now is the state that stays.
    IrregularBlock { block: u32 },
    /// Unreadable bytes after the last frame of a block (a torn frame header or bit rot): the
    /// rest of that block is ignored and it takes no more writes.
    UnreadableTail { block: u32, offset: u32 },
    /// A block header is unreadable (an interrupted erase or bit rot); the block is erased.
    UnreadableHeader { block: u32 },
    /// A garbage collection was cut short before it committed; its copies are dropped.
    UnfinishedCollection { block: u32 },
    /// A record of a kind this version does not know: kept and carried along, never returned.
    UnknownKind { kind: u16 },
    /// A known kind with a name it cannot have; skipped.
    MalformedRecord { kind: u16 },
    /// Every block is in use and the newest holds data, so garbage collection has no spare.
    NoSpareBlock,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::CorruptFrame { block, offset, seq } => write!(
                f,
                "block {block} offset {offset:#x}: frame {seq} failed its CRC (interrupted write or bit rot); skipped"
            ),
            Warning::MalformedFrame { block, offset, seq } => {
                write!(f, "block {block} offset {offset:#x}: frame {seq} does not parse; skipped")
            }
            Warning::IrregularBlock { block } => {
                write!(f, "block {block}: out of order with the rest of the log; dropped and erased")
            }
            Warning::UnreadableTail { block, offset } => {
                write!(f, "block {block} offset {offset:#x}: unreadable data; rest of the block ignored")
            }
            Warning::UnreadableHeader { block } => write!(f, "block {block}: header unreadable; block will be erased"),
            Warning::UnfinishedCollection { block } => {
                write!(f, "block {block}: interrupted garbage collection undone")
            }
            Warning::UnknownKind { kind } => write!(f, "record kind {kind:#06x} unknown to this version; kept"),
            Warning::MalformedRecord { kind } => write!(f, "record of kind {kind:#06x} has an invalid name; skipped"),
            Warning::NoSpareBlock => f.write_str("no spare erase block: writes may fail until records are deleted"),
        }
    }
}

/// What one erase block holds, as `store info` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// Erased with a header; the next block the log moves into.
    Free,
    /// Holds frames up to `end` (an offset inside the block). Only the newest block takes
    /// more, and only when `appendable` (its tail is clean erased flash).
    Used { end: u32, appendable: bool },
    /// Garbage (retired, unreadable, or an undone collection) waiting for an erase.
    NeedsErase,
    /// Erased, but the header was never written.
    NeedsHeader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    pub seq: u32,
    pub erase_count: u32,
    /// False when the header holding the count was lost; the count is then the highest known.
    pub erase_count_known: bool,
    pub state: BlockState,
}

/// Counters since open, for benchmarks and `store info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames_written: u64,
    pub bytes_programmed: u64,
    pub erases: u64,
    pub collections: u64,
}

/// A record as `store info` lists it: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    pub key: RecordKey,
    pub len: usize,
    /// True for secret kinds and for unknown kinds (which might be).
    pub secret: bool,
}

/// Capacity, use and wear, without any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub geometry: Geometry,
    pub blocks: Vec<BlockInfo>,
    /// Bytes of records the store promises to hold.
    pub capacity: usize,
    /// Bytes the live records take (headers, names and values).
    pub live: usize,
    pub records: Vec<RecordInfo>,
    pub warnings: Vec<Warning>,
    pub stats: Stats,
}

#[derive(Debug, Clone)]
struct Live {
    value: Vec<u8>,
    block: usize,
}

/// The store: a log of frames over the erase blocks of `F`.
#[derive(Debug, Clone)]
pub struct Store<F: Flash> {
    flash: F,
    geometry: Geometry,
    mode: Mode,
    blocks: Vec<BlockInfo>,
    /// The newest used block, if it takes more frames.
    head: Option<usize>,
    index: BTreeMap<RecordKey, Live>,
    next_frame_seq: u32,
    next_block_seq: u32,
    warnings: Vec<Warning>,
    stats: Stats,
}

impl<F: Flash> Store<F> {
    /// Recovers the newest committed state, repairs what an interrupted write or erase left
    /// behind, and is ready to write.
    pub fn open(flash: F) -> Result<Self, StoreError> {
        let mut store = Self::recover(flash, Mode::ReadWrite)?;
        store.repair()?;
        Ok(store)
    }

    /// Recovers the newest committed state without writing anything.
    pub fn open_read_only(flash: F) -> Result<Self, StoreError> {
        Self::recover(flash, Mode::ReadOnly)
    }

    pub fn get(&self, record: Record<'_>) -> Option<&[u8]> {
        let key = RecordKey::of(record).ok()?;
        self.index.get(&key).map(|live| live.value.as_slice())
    }

    /// Reads a 32-byte key; a value of any other length is an error, not a truncated key.
    pub fn get_key32(&self, record: Record<'_>) -> Result<Option<[u8; 32]>, StoreError> {
        match self.get(record) {
            None => Ok(None),
            Some(value) => value.try_into().map(Some).map_err(|_| StoreError::WrongLength {
                kind: record.kind(),
                expected: 32,
                found: value.len(),
            }),
        }
    }

    pub fn put(&mut self, record: Record<'_>, value: &[u8]) -> Result<(), StoreError> {
        let mut tx = Transaction::new();
        tx.put(record, value)?;
        self.commit(&tx)
    }

    pub fn delete(&mut self, record: Record<'_>) -> Result<(), StoreError> {
        let mut tx = Transaction::new();
        tx.delete(record)?;
        self.commit(&tx)
    }

    /// Writes every change of `tx` in one frame: after a power cut, all of them or none are
    /// there. Changes that change nothing are not written (saves wear on repeated config saves).
    pub fn commit(&mut self, tx: &Transaction) -> Result<(), StoreError> {
        if self.mode == Mode::ReadOnly {
            return Err(StoreError::ReadOnly);
        }
        let changes: Vec<(&RecordKey, Option<&[u8]>)> = tx
            .changes
            .iter()
            .map(|(key, value)| (key, value.as_deref()))
            .filter(|(key, value)| self.index.get(*key).map(|live| live.value.as_slice()) != *value)
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        let entries: Vec<Entry<'_>> = changes
            .iter()
            .map(|(key, value)| match value {
                Some(value) => Entry::Put { kind: key.kind, name: &key.name, value },
                None => Entry::Delete { kind: key.kind, name: &key.name },
            })
            .collect();
        let body_len: usize = entries.iter().map(Entry::encoded_len).sum();
        let frame_len = format::frame_len(body_len, self.write_size());
        // A frame must still fit one block when garbage collection copies it with a retire entry.
        let max = self.block_capacity() - RETIRE_LEN;
        if frame_len > max {
            return Err(StoreError::TooLarge { size: frame_len, max });
        }
        let live_after = changes.iter().fold(self.live_bytes(), |live, (key, value)| {
            let old = self.index.get(*key).map_or(0, |l| put_len(key, &l.value));
            live - old + value.map_or(0, |v| put_len(key, v))
        });
        if live_after > self.capacity() {
            return Err(StoreError::Full { needed: live_after, capacity: self.capacity() });
        }
        let head = self.make_room(frame_len)?;
        self.write_frame(head, 0, &entries)?;
        for (key, value) in changes {
            match value {
                Some(value) => {
                    self.index.insert(key.clone(), Live { value: value.to_vec(), block: head });
                }
                None => {
                    self.index.remove(key);
                }
            }
        }
        Ok(())
    }

    /// Capacity, use, wear and the list of records (kinds, names and lengths, never values).
    pub fn info(&self) -> Info {
        Info {
            geometry: self.geometry,
            blocks: self.blocks.clone(),
            capacity: self.capacity(),
            live: self.live_bytes(),
            records: self
                .index
                .iter()
                .map(|(key, live)| RecordInfo {
                    key: key.clone(),
                    len: live.value.len(),
                    secret: key.kind().is_none_or(RecordKind::is_secret),
                })
                .collect(),
            warnings: self.warnings.clone(),
            stats: self.stats,
        }
    }

    /// What recovery found; empty after a clean shutdown.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn flash(&self) -> &F {
        &self.flash
    }

    /// For tests: the simulator's power switch and bit flips.
    pub fn flash_mut(&mut self) -> &mut F {
        &mut self.flash
    }

    pub fn into_flash(self) -> F {
        self.flash
    }

    /// Bytes of live records the store promises to hold: all blocks but the spare, less what
    /// each block spends on the frame and retire entry garbage collection writes into it.
    pub fn capacity(&self) -> usize {
        let per_block = self.block_capacity() - FRAME_OVERHEAD - RETIRE_LEN;
        (self.geometry.block_count as usize - 1) * per_block
    }

    /// Bytes the live records take as they would be copied by garbage collection.
    pub fn live_bytes(&self) -> usize {
        self.index.iter().map(|(key, live)| put_len(key, &live.value)).sum()
    }

    fn recover(mut flash: F, mode: Mode) -> Result<Self, StoreError> {
        let geometry = flash.geometry().check()?;
        let first_frame = first_frame_offset(geometry);
        let write_size = geometry.write_size as usize;
        let mut warnings = Vec::new();
        let mut buf = vec![0u8; geometry.block_size as usize];

        // Pass 1: each block's header and frames, owned, so one block buffer serves all.
        let mut scans = Vec::with_capacity(geometry.block_count as usize);
        for block in 0..geometry.block_count {
            flash.read(geometry.block_start(block), &mut buf)?;
            let header = match BlockHeader::parse(&buf) {
                HeaderRead::Valid(header) if header.block_size != geometry.block_size => {
                    return Err(StoreError::GeometryMismatch {
                        image: header.block_size,
                        device: geometry.block_size,
                    });
                }
                HeaderRead::OtherVersion(version) => return Err(StoreError::UnsupportedVersion(version)),
                other => other,
            };
            let mut scan = BlockScan {
                header,
                frames: Vec::new(),
                end: first_frame as usize,
                clean: true,
                corrupt: false,
                max_seq: None,
            };
            if matches!(header, HeaderRead::Valid(_)) {
                scan_frames(&buf, block, write_size, &mut scan, &mut warnings);
            } else if header == HeaderRead::Blank && buf.iter().any(|&b| b != ERASED) {
                // An erase cut short after it cleared the header: the rest may hold anything.
                scan.header = HeaderRead::Garbage;
                warnings.push(Warning::UnreadableHeader { block });
            } else if header == HeaderRead::Garbage {
                warnings.push(Warning::UnreadableHeader { block });
            }
            scans.push(scan);
        }

        // Pass 2: which blocks hold live frames. A retire entry kills its block and all older.
        let max_retired = scans.iter().flat_map(|s| &s.frames).flat_map(|f| &f.retires).copied().max();
        let mut blocks: Vec<BlockInfo> = Vec::with_capacity(scans.len());
        for scan in &mut scans {
            let (seq, erase_count, known) = match scan.header {
                HeaderRead::Valid(h) => (h.seq, h.erase_count, true),
                _ => (0, 0, false),
            };
            let retired = known && max_retired.is_some_and(|retired| seq <= retired);
            let state = match scan.header {
                HeaderRead::Blank => BlockState::NeedsHeader,
                HeaderRead::Valid(_) if retired => BlockState::NeedsErase,
                HeaderRead::Valid(_) if scan.frames.is_empty() && scan.clean && !scan.corrupt => {
                    BlockState::Free
                }
                HeaderRead::Valid(_) if scan.frames.is_empty() => BlockState::NeedsErase,
                HeaderRead::Valid(_) => BlockState::Used { end: scan.end as u32, appendable: false },
                _ => BlockState::NeedsErase,
            };
            if state == BlockState::NeedsErase {
                scan.frames.clear();
            }
            blocks.push(BlockInfo { seq, erase_count, erase_count_known: known, state });
        }
        // Block sequence order and frame sequence order agree in any log this store wrote.
        // Where they do not, one reading would hide frames another reading (after the next
        // collection) would show, so such blocks are dropped whole, first come first kept.
        let mut by_seq: Vec<usize> =
            (0..blocks.len()).filter(|&b| matches!(blocks[b].state, BlockState::Used { .. })).collect();
        by_seq.sort_by_key(|&b| (blocks[b].seq, b));
        let (mut last_block_seq, mut last_frame_seq): (Option<u32>, Option<u32>) = (None, None);
        for block in by_seq {
            let frames = &scans[block].frames;
            let in_order = frames.windows(2).all(|pair| pair[0].seq < pair[1].seq)
                && frames.first().is_none_or(|first| last_frame_seq.is_none_or(|last| first.seq > last))
                && last_block_seq != Some(blocks[block].seq);
            if in_order {
                last_block_seq = Some(blocks[block].seq);
                last_frame_seq = frames.last().map(|f| f.seq).or(last_frame_seq);
            } else {
                warnings.push(Warning::IrregularBlock { block: block as u32 });
                blocks[block].state = BlockState::NeedsErase;
                scans[block].frames.clear();
            }
        }
        let newest_used = (0..blocks.len())
            .filter(|&b| matches!(blocks[b].state, BlockState::Used { .. }))
            .max_by_key(|&b| blocks[b].seq);
        // The log moves into free blocks in sequence order; a free block older than the newest
        // used one cannot happen by design, so erase it rather than let the order break.
        if let Some(newest) = newest_used {
            for b in 0..blocks.len() {
                if blocks[b].state == BlockState::Free && blocks[b].seq < blocks[newest].seq {
                    blocks[b].state = BlockState::NeedsErase;
                }
            }
        }
        // Commits never take the last spare block, so "every block used" means a collection
        // was cut short after it moved into the spare: if the newest block holds nothing but
        // uncommitted copies (the originals are intact), drop it to get the spare back.
        let all_used = blocks.iter().all(|b| matches!(b.state, BlockState::Used { .. }));
        if let (true, Some(newest)) = (all_used, newest_used) {
            let frames = &scans[newest].frames;
            if frames.iter().all(|f| f.flags & FLAG_GC_COPY != 0 && f.retires.is_empty()) {
                warnings.push(Warning::UnfinishedCollection { block: newest as u32 });
                blocks[newest].state = BlockState::NeedsErase;
                scans[newest].frames.clear();
            } else {
                warnings.push(Warning::NoSpareBlock);
            }
        }

        // Pass 3: replay the live blocks in log order.
        let mut order: Vec<usize> =
            (0..blocks.len()).filter(|&b| matches!(blocks[b].state, BlockState::Used { .. })).collect();
        order.sort_by_key(|&b| blocks[b].seq);
        let mut index = BTreeMap::new();
        for &block in &order {
            for frame in &scans[block].frames {
                for change in &frame.changes {
                    match change {
                        Change::Put(key, value) => {
                            index.insert(key.clone(), Live { value: value.clone(), block });
                        }
                        Change::Delete(key) => {
                            index.remove(key);
                        }
                    }
                }
            }
        }
        for key in index.keys().filter(|key: &&RecordKey| key.kind().is_none()) {
            warnings.push(Warning::UnknownKind { kind: key.kind });
        }

        let head = order.last().copied();
        if let Some(head) = head {
            if let BlockState::Used { end, .. } = blocks[head].state {
                blocks[head].state = BlockState::Used { end, appendable: scans[head].clean };
            }
        }
        let highest_count =
            blocks.iter().filter(|b| b.erase_count_known).map(|b| b.erase_count).max().unwrap_or(0);
        for block in blocks.iter_mut().filter(|b| !b.erase_count_known) {
            block.erase_count = highest_count;
        }
        let max_frame_seq = scans.iter().filter_map(|s| s.max_seq).max();
        let max_block_seq =
            blocks.iter().filter(|b| b.erase_count_known).map(|b| b.seq).chain(max_retired).max();
        Ok(Store {
            flash,
            geometry,
            mode,
            blocks,
            head: head.filter(|&h| scans[h].clean),
            index,
            next_frame_seq: max_frame_seq.map_or(Ok(0), next_seq)?,
            next_block_seq: max_block_seq.map_or(Ok(0), next_seq)?,
            warnings,
            stats: Stats::default(),
        })
    }

    /// Erases what recovery or a failed write marked, so every block is used or free.
    fn repair(&mut self) -> Result<(), StoreError> {
        for block in 0..self.blocks.len() {
            match self.blocks[block].state {
                BlockState::NeedsErase => self.erase_and_format(block)?,
                BlockState::NeedsHeader => self.format(block)?,
                BlockState::Free | BlockState::Used { .. } => {}
            }
        }
        Ok(())
    }

    /// Returns the head block with `len` bytes free for a commit, moving to a free block or
    /// collecting garbage as needed, while keeping one block spare for collection.
    fn make_room(&mut self, len: usize) -> Result<usize, StoreError> {
        let rounds = GC_ROUNDS_PER_BLOCK * self.geometry.block_count + 1;
        for _ in 0..rounds {
            self.repair()?;
            let free = self.free_blocks();
            if let Some(head) = self.head.filter(|&h| self.room(h) >= len) {
                if free >= 1 {
                    return Ok(head);
                }
            }
            if free >= 2 {
                self.open_next_free()?;
            } else {
                self.collect()?;
            }
        }
        Err(StoreError::Full { needed: self.live_bytes() + len, capacity: self.capacity() })
    }

    /// Copies the live records of the oldest block to the head, commits that with a retire
    /// entry for the old block, and only then erases it.
    fn collect(&mut self) -> Result<(), StoreError> {
        let victim = (0..self.blocks.len())
            .filter(|&b| matches!(self.blocks[b].state, BlockState::Used { .. }))
            .min_by_key(|&b| self.blocks[b].seq)
            .ok_or(StoreError::Full { needed: self.live_bytes(), capacity: self.capacity() })?;
        if self.head == Some(victim) {
            self.head = None;
        }
        self.stats.collections += 1;
        let live: Vec<(RecordKey, Vec<u8>)> = self
            .index
            .iter()
            .filter(|(_, live)| live.block == victim)
            .map(|(key, live)| (key.clone(), live.value.clone()))
            .collect();
        let mut items: Vec<Entry<'_>> =
            live.iter().map(|(key, value)| Entry::Put { kind: key.kind, name: &key.name, value }).collect();
        items.push(Entry::Retire { block_seq: self.blocks[victim].seq });

        let write_size = self.write_size();
        let mut pending: Vec<Entry<'_>> = Vec::new();
        let mut pending_len = 0;
        for item in items {
            let room = self.head.map_or(0, |h| self.room(h));
            if format::frame_len(pending_len + item.encoded_len(), write_size) <= room {
                pending_len += item.encoded_len();
                pending.push(item);
                continue;
            }
            if !pending.is_empty() {
                let head =
                    self.head.ok_or(StoreError::Full { needed: pending_len, capacity: self.capacity() })?;
                self.write_frame(head, FLAG_GC_COPY, &pending)?;
                self.move_index(&pending, head);
                pending.clear();
            }
            if self.free_blocks() == 0 {
                return Err(StoreError::Full { needed: self.live_bytes(), capacity: self.capacity() });
            }
            self.open_next_free()?;
            pending_len = item.encoded_len();
            pending.push(item);
        }
        let head = self.head.ok_or(StoreError::Full { needed: pending_len, capacity: self.capacity() })?;
        if format::frame_len(pending_len, write_size) > self.room(head) {
            // Only a frame larger than a block could get here, and commit refuses those.
            return Err(StoreError::TooLarge { size: pending_len, max: self.room(head) });
        }
        self.write_frame(head, FLAG_GC_COPY, &pending)?;
        self.move_index(&pending, head);
        self.blocks[victim].state = BlockState::NeedsErase;
        self.erase_and_format(victim)
    }

    fn move_index(&mut self, copied: &[Entry<'_>], to: usize) {
        for entry in copied {
            if let Entry::Put { kind, name, .. } = *entry {
                if let Some(live) = self.index.get_mut(&RecordKey { kind, name: name.to_vec() }) {
                    live.block = to;
                }
            }
        }
    }

    /// Appends one frame to `block` and waits until it is durable.
    fn write_frame(&mut self, block: usize, flags: u8, entries: &[Entry<'_>]) -> Result<(), StoreError> {
        let seq = self.next_frame_seq;
        self.next_frame_seq = next_seq(seq)?;
        let frame = format::encode_frame(seq, flags, entries, self.write_size());
        let BlockState::Used { end, appendable: true } = self.blocks[block].state else {
            return Err(StoreError::Internal("write to a block that is not the head"));
        };
        let offset = self.geometry.block_start(block as u32) + end;
        let written = self.flash.program(offset, &frame).and_then(|()| self.flash.sync());
        self.stats.bytes_programmed += frame.len() as u64;
        if let Err(e) = written {
            // Part of the frame may have landed; never append after it.
            self.blocks[block].state = BlockState::Used { end, appendable: false };
            self.head = None;
            return Err(e.into());
        }
        self.stats.frames_written += 1;
        self.blocks[block].state = BlockState::Used { end: end + frame.len() as u32, appendable: true };
        Ok(())
    }

    fn open_next_free(&mut self) -> Result<(), StoreError> {
        let next = (0..self.blocks.len())
            .filter(|&b| self.blocks[b].state == BlockState::Free)
            .min_by_key(|&b| self.blocks[b].seq)
            .ok_or(StoreError::Full { needed: self.live_bytes(), capacity: self.capacity() })?;
        if let Some(head) = self.head {
            if let BlockState::Used { end, .. } = self.blocks[head].state {
                self.blocks[head].state = BlockState::Used { end, appendable: false };
            }
        }
        self.blocks[next].state =
            BlockState::Used { end: first_frame_offset(self.geometry), appendable: true };
        self.head = Some(next);
        Ok(())
    }

    fn erase_and_format(&mut self, block: usize) -> Result<(), StoreError> {
        self.blocks[block].state = BlockState::NeedsErase;
        self.blocks[block].erase_count = self.blocks[block].erase_count.saturating_add(1);
        self.stats.erases += 1;
        self.flash.erase(block as u32)?;
        // An erase that reports success but left programmed bits would corrupt the next header.
        let mut contents = vec![0u8; self.geometry.block_size as usize];
        self.flash.read(self.geometry.block_start(block as u32), &mut contents)?;
        if contents.iter().any(|&b| b != ERASED) {
            return Err(StoreError::EraseFailed { block: block as u32 });
        }
        self.format(block)
    }

    /// Writes the header of an erased block, making it the newest free block.
    fn format(&mut self, block: usize) -> Result<(), StoreError> {
        let seq = self.next_block_seq;
        self.next_block_seq = next_seq(seq)?;
        let header = BlockHeader {
            block_size: self.geometry.block_size,
            seq,
            erase_count: self.blocks[block].erase_count,
        };
        let mut bytes = header.encode().to_vec();
        bytes.resize(first_frame_offset(self.geometry) as usize, ERASED);
        self.blocks[block].state = BlockState::NeedsErase;
        self.flash.program(self.geometry.block_start(block as u32), &bytes)?;
        self.flash.sync()?;
        self.stats.bytes_programmed += bytes.len() as u64;
        self.blocks[block] = BlockInfo {
            seq,
            erase_count: header.erase_count,
            erase_count_known: true,
            state: BlockState::Free,
        };
        Ok(())
    }

    fn free_blocks(&self) -> usize {
        self.blocks.iter().filter(|b| b.state == BlockState::Free).count()
    }

    /// Bytes a frame may still take in `block`.
    fn room(&self, block: usize) -> usize {
        match self.blocks[block].state {
            BlockState::Used { end, appendable: true } => (self.geometry.block_size - end) as usize,
            _ => 0,
        }
    }

    /// Bytes of frames one block holds.
    fn block_capacity(&self) -> usize {
        (self.geometry.block_size - first_frame_offset(self.geometry)) as usize
    }

    fn write_size(&self) -> usize {
        self.geometry.write_size as usize
    }
}

/// Where the first frame of a block starts: after the header, at a write-size boundary.
fn first_frame_offset(geometry: Geometry) -> u32 {
    (BLOCK_HEADER_LEN as u32).next_multiple_of(geometry.write_size)
}

/// Bytes a record takes as a put entry.
fn put_len(key: &RecordKey, value: &[u8]) -> usize {
    PUT_HEADER_LEN + key.name.len() + value.len()
}

/// The sequence number after `seq`; at u32::MAX the store stops writing rather than wrap
/// (4 billion commits: 136 years at one a second).
fn next_seq(seq: u32) -> Result<u32, StoreError> {
    seq.checked_add(1).ok_or(StoreError::SequenceExhausted)
}

/// One block as recovery read it.
struct BlockScan {
    header: HeaderRead,
    frames: Vec<ScannedFrame>,
    /// Offset after the last frame with a readable header.
    end: usize,
    /// Only erased bytes after `end`.
    clean: bool,
    /// A frame failed its CRC, so the block is not pristine even if it has no valid frame.
    corrupt: bool,
    /// Highest sequence number of any frame with a readable header, committed or not, so a
    /// new frame never reuses one.
    max_seq: Option<u32>,
}

struct ScannedFrame {
    seq: u32,
    flags: u8,
    changes: Vec<Change>,
    retires: Vec<u32>,
}

enum Change {
    Put(RecordKey, Vec<u8>),
    Delete(RecordKey),
}

/// Reads every frame of one block (whose header is valid) into `scan`.
fn scan_frames(buf: &[u8], block: u32, write_size: usize, scan: &mut BlockScan, warnings: &mut Vec<Warning>) {
    loop {
        let offset = scan.end as u32;
        match format::read_frame(buf, scan.end, write_size) {
            FrameRead::End => return,
            FrameRead::Garbage => {
                scan.clean = false;
                warnings.push(Warning::UnreadableTail { block, offset });
                return;
            }
            FrameRead::Corrupt { seq, len } => {
                scan.max_seq = scan.max_seq.max(Some(seq));
                scan.corrupt = true;
                warnings.push(Warning::CorruptFrame { block, offset, seq });
                scan.end += len;
            }
            FrameRead::Valid { seq, flags, body, len } => {
                scan.max_seq = scan.max_seq.max(Some(seq));
                scan.end += len;
                match parse_frame(body) {
                    Some((changes, retires, malformed)) => {
                        warnings.extend(malformed.into_iter().map(|kind| Warning::MalformedRecord { kind }));
                        scan.frames.push(ScannedFrame { seq, flags, changes, retires });
                    }
                    None => {
                        scan.corrupt = true;
                        warnings.push(Warning::MalformedFrame { block, offset, seq });
                    }
                }
            }
        }
    }
}

/// A frame body as changes and retire entries, plus the kinds of records skipped for a name
/// their kind cannot have. `None` when the body does not parse at all.
fn parse_frame(body: &[u8]) -> Option<(Vec<Change>, Vec<u32>, Vec<u16>)> {
    let entries = format::parse_entries(body).ok()?;
    let (mut changes, mut retires, mut malformed) = (Vec::new(), Vec::new(), Vec::new());
    for entry in entries {
        match entry {
            Entry::Put { kind, name, value } => match RecordKey::parse(kind, name) {
                Some(key) => changes.push(Change::Put(key, value.to_vec())),
                None => malformed.push(kind),
            },
            Entry::Delete { kind, name } => match RecordKey::parse(kind, name) {
                Some(key) => changes.push(Change::Delete(key)),
                None => malformed.push(kind),
            },
            Entry::Retire { block_seq } => retires.push(block_seq),
        }
    }
    Some((changes, retires, malformed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::ConfigKey;
    use crate::store::sim::SimFlash;

    const SMALL: Geometry = Geometry { block_size: 256, block_count: 4, write_size: 1 };

    fn fresh(geometry: Geometry) -> Store<SimFlash> {
        Store::open(SimFlash::new(geometry).unwrap()).unwrap()
    }

    fn reopen(store: Store<SimFlash>) -> Store<SimFlash> {
        Store::open(store.into_flash()).unwrap()
    }

    #[test]
    fn records_round_trip_and_survive_reopen() {
        let mut store = fresh(SMALL);
        store.put(Record::MachineKey, &[1; 32]).unwrap();
        store.put(Record::Config(ConfigKey::Hostname), b"gw").unwrap();
        store.put(Record::Config(ConfigKey::Hostname), b"gw2").unwrap();
        store.put(Record::TkaState, b"aum").unwrap();
        store.delete(Record::TkaState).unwrap();
        let store = reopen(store);
        assert_eq!(store.get_key32(Record::MachineKey).unwrap(), Some([1; 32]));
        assert_eq!(store.get(Record::Config(ConfigKey::Hostname)), Some(&b"gw2"[..]));
        assert_eq!(store.get(Record::TkaState), None);
        assert!(store.warnings().is_empty(), "{:?}", store.warnings());
    }

    #[test]
    fn a_kind_is_never_returned_as_another() {
        let mut store = fresh(SMALL);
        store.put(Record::Certificate("r.ts.net"), b"-----BEGIN CERTIFICATE-----").unwrap();
        assert_eq!(store.get(Record::CertificateKey("r.ts.net")), None);
        assert_eq!(store.get(Record::Certificate("other.ts.net")), None);
        assert_eq!(store.get(Record::NodeKey), None);
        assert!(store.get(Record::Certificate("r.ts.net")).is_some());
    }

    #[test]
    fn a_key_of_the_wrong_length_is_an_error() {
        let mut store = fresh(SMALL);
        store.put(Record::NodeKey, &[1; 31]).unwrap();
        assert!(matches!(
            store.get_key32(Record::NodeKey),
            Err(StoreError::WrongLength { expected: 32, found: 31, .. })
        ));
    }

    #[test]
    fn a_transaction_commits_every_change_in_one_frame() {
        let mut store = fresh(SMALL);
        store.put(Record::NodeKey, &[1; 32]).unwrap();
        let frames = store.stats().frames_written;
        let mut tx = Transaction::new();
        tx.put(Record::NodeKey, &[2; 32]).unwrap().put(Record::PreviousNodeKey, &[1; 32]).unwrap();
        tx.delete(Record::TkaState).unwrap();
        store.commit(&tx).unwrap();
        assert_eq!(store.stats().frames_written, frames + 1);
        let store = reopen(store);
        assert_eq!(store.get_key32(Record::NodeKey).unwrap(), Some([2; 32]));
        assert_eq!(store.get_key32(Record::PreviousNodeKey).unwrap(), Some([1; 32]));
    }

    #[test]
    fn unchanged_values_are_not_rewritten() {
        let mut store = fresh(SMALL);
        store.put(Record::Config(ConfigKey::Snat), b"on").unwrap();
        let written = store.stats().bytes_programmed;
        store.put(Record::Config(ConfigKey::Snat), b"on").unwrap();
        store.delete(Record::TkaState).unwrap();
        assert_eq!(store.stats().bytes_programmed, written);
    }

    #[test]
    fn garbage_collection_keeps_every_record_across_many_rotations() {
        let mut store = fresh(SMALL);
        store.put(Record::MachineKey, &[9; 32]).unwrap();
        for i in 0..500u32 {
            store.put(Record::Config(ConfigKey::AdvertisedRoutes), &i.to_le_bytes()).unwrap();
        }
        assert!(store.stats().collections > 10);
        let store = reopen(store);
        assert_eq!(store.get_key32(Record::MachineKey).unwrap(), Some([9; 32]));
        assert_eq!(store.get(Record::Config(ConfigKey::AdvertisedRoutes)), Some(&499u32.to_le_bytes()[..]));
        assert!(store.warnings().is_empty(), "{:?}", store.warnings());
    }

    #[test]
    fn a_full_store_refuses_the_write_and_keeps_what_it_had() {
        let mut store = fresh(SMALL);
        let mut stored = Vec::new();
        let domains = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"];
        let full = domains.iter().find_map(|domain| {
            match store.put(Record::Certificate(domain), &[domain.as_bytes()[0]; 150]) {
                Ok(()) => {
                    stored.push(*domain);
                    None
                }
                Err(e) => Some(e),
            }
        });
        assert!(matches!(full, Some(StoreError::Full { .. })), "{full:?}");
        assert!(!stored.is_empty());
        let mut store = reopen(store);
        for domain in &stored {
            assert_eq!(store.get(Record::Certificate(domain)), Some(&[domain.as_bytes()[0]; 150][..]));
        }
        // Not wedged: deleting makes room again.
        store.delete(Record::Certificate(stored[0])).unwrap();
        store.put(Record::Config(ConfigKey::Hostname), b"gw").unwrap();
        assert!(reopen(store).get(Record::Config(ConfigKey::Hostname)).is_some());
    }

    #[test]
    fn a_transaction_larger_than_a_block_is_refused() {
        let mut store = fresh(SMALL);
        assert!(matches!(store.put(Record::TkaState, &[0; 300]), Err(StoreError::TooLarge { .. })));
    }

    #[test]
    fn works_with_a_write_size_larger_than_a_byte() {
        let mut store = fresh(Geometry { block_size: 512, block_count: 3, write_size: 16 });
        for i in 0..200u8 {
            store.put(Record::Config(ConfigKey::ExitNode), &[i; 5]).unwrap();
        }
        assert_eq!(reopen(store).get(Record::Config(ConfigKey::ExitNode)), Some(&[199u8; 5][..]));
    }

    #[test]
    fn records_of_unknown_kinds_are_kept_through_collection_but_not_returned() {
        let mut flash = SimFlash::new(SMALL).unwrap();
        let header = BlockHeader { block_size: 256, seq: 0, erase_count: 0 }.encode();
        flash.program(0, &header).unwrap();
        let frame =
            format::encode_frame(0, 0, &[Entry::Put { kind: 0x7777, name: b"future", value: b"v" }], 1);
        flash.program(BLOCK_HEADER_LEN as u32, &frame).unwrap();
        let mut store = Store::open(flash).unwrap();
        assert!(store.warnings().contains(&Warning::UnknownKind { kind: 0x7777 }));
        for i in 0..100u32 {
            store.put(Record::Config(ConfigKey::Hostname), &i.to_le_bytes()).unwrap();
        }
        let store = reopen(store);
        let unknown = store.info().records.into_iter().find(|r| r.key.kind_id() == 0x7777).unwrap();
        assert_eq!((unknown.len, unknown.secret), (1, true));
    }

    #[test]
    fn read_only_open_writes_nothing_and_refuses_commits() {
        let flash = SimFlash::new(SMALL).unwrap();
        let mut store = Store::open_read_only(flash).unwrap();
        assert!(matches!(store.put(Record::NodeKey, &[0; 32]), Err(StoreError::ReadOnly)));
        assert!(store.flash().image().iter().all(|&b| b == ERASED));
    }

    #[test]
    fn an_image_of_a_newer_format_is_refused_not_erased() {
        let mut flash = SimFlash::new(SMALL).unwrap();
        let mut header = BlockHeader { block_size: 256, seq: 0, erase_count: 0 }.encode();
        header[4] = 2;
        let crc = format::crc32(&header[..20]);
        header[20..24].copy_from_slice(&crc.to_le_bytes());
        flash.program(0, &header).unwrap();
        assert!(matches!(Store::open(flash), Err(StoreError::UnsupportedVersion(2))));
    }

    #[test]
    fn info_lists_kinds_and_lengths_and_marks_secrets() {
        let mut store = fresh(SMALL);
        store.put(Record::NodeKey, &[3; 32]).unwrap();
        store.put(Record::Certificate("r.ts.net"), b"pem").unwrap();
        let info = store.info();
        assert_eq!(info.records.len(), 2);
        let node = info.records.iter().find(|r| r.key.kind() == Some(RecordKind::NodeKey)).unwrap();
        assert!(node.secret);
        let cert = info.records.iter().find(|r| r.key.kind() == Some(RecordKind::Certificate)).unwrap();
        assert_eq!((cert.key.name(), cert.len, cert.secret), ("r.ts.net", 3, false));
        assert_eq!(info.blocks.len(), 4);
        assert!(info.live > 0 && info.live < info.capacity);
    }
}
