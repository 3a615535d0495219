//! The on-flash format, version 1 (see the module documentation of `store` for the picture).
//! Everything here is pure: bytes in, parsed values or errors out, never a panic.

/// Version of the block and frame layouts below; a block header with another version makes the
/// store refuse to open (rather than erase what a newer tinytail wrote).
pub const FORMAT_VERSION: u8 = 1;

/// First bytes of every block header: "TTsb" (tinytail store block).
pub const BLOCK_MAGIC: [u8; 4] = *b"TTsb";
/// magic 4, version 1, reserved 3, block size 4, block sequence 4, erase count 4, CRC 4.
pub const BLOCK_HEADER_LEN: usize = 24;

/// First bytes of every frame: "Tf".
pub const FRAME_MAGIC: [u8; 2] = *b"Tf";
/// magic 2, version 1, flags 1, sequence 4, body length 4, header CRC 4.
pub const FRAME_HEADER_LEN: usize = 16;
/// The commit CRC after the body, over header and body.
pub const FRAME_TRAILER_LEN: usize = 4;
/// Bytes a frame adds around its entries.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + FRAME_TRAILER_LEN;
/// Frame flag: every entry is a garbage-collection copy of a record that is still committed
/// elsewhere, so the frame may be dropped if its collection never finished.
pub const FLAG_GC_COPY: u8 = 0x01;
/// Flags this version understands; a frame with any other bit set is skipped.
const KNOWN_FLAGS: u8 = FLAG_GC_COPY;

/// Entry tags.
const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_RETIRE: u8 = 3;
/// tag 1, kind 2, name length 1, value length 4.
pub const PUT_HEADER_LEN: usize = 8;
/// tag 1, kind 2, name length 1.
pub const DELETE_HEADER_LEN: usize = 4;
/// tag 1, block sequence 4.
pub const RETIRE_LEN: usize = 5;
/// Names (certificate domains) are length-prefixed by one byte.
pub const MAX_NAME_LEN: usize = 255;

/// Every byte of erased flash.
pub const ERASED: u8 = 0xFF;

/// The header at the start of every erase block, written right after the block is erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// The erase block size the image was formatted with.
    pub block_size: u32,
    /// Increases with every erase in the store; the log runs through blocks in this order.
    pub seq: u32,
    /// How often this block has been erased, carried across erases for wear reporting.
    pub erase_count: u32,
}

/// What the first bytes of a block turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRead {
    Valid(BlockHeader),
    /// All 0xFF: erased, but the header was never written.
    Blank,
    /// A valid header of another format version.
    OtherVersion(u8),
    /// Anything else: a torn header, an interrupted erase, bit rot.
    Garbage,
}

impl BlockHeader {
    pub fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut out = [0u8; BLOCK_HEADER_LEN];
        out[0..4].copy_from_slice(&BLOCK_MAGIC);
        out[4] = FORMAT_VERSION;
        out[8..12].copy_from_slice(&self.block_size.to_le_bytes());
        out[12..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..20].copy_from_slice(&self.erase_count.to_le_bytes());
        let crc = crc32(&out[..20]);
        out[20..24].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn parse(bytes: &[u8]) -> HeaderRead {
        let Some(bytes) = bytes.get(..BLOCK_HEADER_LEN) else { return HeaderRead::Garbage };
        if bytes.iter().all(|&b| b == ERASED) {
            return HeaderRead::Blank;
        }
        if bytes[0..4] != BLOCK_MAGIC || le32(bytes, 20) != crc32(&bytes[..20]) {
            return HeaderRead::Garbage;
        }
        if bytes[4] != FORMAT_VERSION {
            return HeaderRead::OtherVersion(bytes[4]);
        }
        HeaderRead::Valid(BlockHeader {
            block_size: le32(bytes, 8),
            seq: le32(bytes, 12),
            erase_count: le32(bytes, 16),
        })
    }
}

/// One change inside a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// `kind` is a record kind id; `name` is empty for kinds that have one record only.
    Put {
        kind: u16,
        name: &'a [u8],
        value: &'a [u8],
    },
    Delete {
        kind: u16,
        name: &'a [u8],
    },
    /// The block with this sequence number is garbage from here on (its live records were copied).
    Retire {
        block_seq: u32,
    },
}

impl Entry<'_> {
    pub fn encoded_len(&self) -> usize {
        match self {
            Entry::Put { name, value, .. } => PUT_HEADER_LEN + name.len() + value.len(),
            Entry::Delete { name, .. } => DELETE_HEADER_LEN + name.len(),
            Entry::Retire { .. } => RETIRE_LEN,
        }
    }

    /// Appends the entry; the caller has checked `name.len() <= MAX_NAME_LEN` and that the value
    /// fits a block (so it fits a u32).
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Entry::Put { kind, name, value } => {
                out.push(TAG_PUT);
                out.extend_from_slice(&kind.to_le_bytes());
                out.push(name.len() as u8);
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                out.extend_from_slice(name);
                out.extend_from_slice(value);
            }
            Entry::Delete { kind, name } => {
                out.push(TAG_DELETE);
                out.extend_from_slice(&kind.to_le_bytes());
                out.push(name.len() as u8);
                out.extend_from_slice(name);
            }
            Entry::Retire { block_seq } => {
                out.push(TAG_RETIRE);
                out.extend_from_slice(&block_seq.to_le_bytes());
            }
        }
    }
}

/// Length of a frame holding entries of `entries_len` bytes, padded to the write size.
pub fn frame_len(entries_len: usize, write_size: usize) -> usize {
    (FRAME_OVERHEAD + entries_len).next_multiple_of(write_size)
}

/// Encodes one frame, padded with 0xFF (unprogrammed) to a multiple of `write_size`.
pub fn encode_frame(seq: u32, flags: u8, entries: &[Entry<'_>], write_size: usize) -> Vec<u8> {
    let body_len: usize = entries.iter().map(Entry::encoded_len).sum();
    let mut out = Vec::with_capacity(frame_len(body_len, write_size));
    out.extend_from_slice(&FRAME_MAGIC);
    out.push(FORMAT_VERSION);
    out.push(flags);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    let header_crc = crc32(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    for entry in entries {
        entry.encode(&mut out);
    }
    let commit_crc = crc32(&out);
    out.extend_from_slice(&commit_crc.to_le_bytes());
    out.resize(frame_len(body_len, write_size), ERASED);
    out
}

/// What was found at a frame position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRead<'a> {
    /// A complete frame; `len` includes padding, so the next frame starts `len` bytes later.
    Valid { seq: u32, flags: u8, body: &'a [u8], len: usize },
    /// The header is intact but the rest is not (a torn write or bit rot): `len` bytes to skip.
    Corrupt { seq: u32, len: usize },
    /// Only 0xFF from here to the end of the block: the end of the log in this block.
    End,
    /// No valid header: the rest of the block cannot be trusted.
    Garbage,
}

/// Reads the frame starting at `at` in `block` (a whole erase block).
pub fn read_frame(block: &[u8], at: usize, write_size: usize) -> FrameRead<'_> {
    let Some(rest) = block.get(at..) else { return FrameRead::Garbage };
    if rest.iter().all(|&b| b == ERASED) {
        return FrameRead::End;
    }
    let Some(header) = rest.get(..FRAME_HEADER_LEN) else { return FrameRead::Garbage };
    if header[0..2] != FRAME_MAGIC || le32(header, 12) != crc32(&header[..12]) {
        return FrameRead::Garbage;
    }
    let seq = le32(header, 4);
    let body_len = le32(header, 8) as usize;
    let len = frame_len(body_len, write_size);
    if len > rest.len() {
        return FrameRead::Garbage;
    }
    let flags = header[3];
    let commit_at = FRAME_HEADER_LEN + body_len;
    let commit_ok = le32(rest, commit_at) == crc32(&rest[..commit_at]);
    if !commit_ok || header[2] != FORMAT_VERSION || flags & !KNOWN_FLAGS != 0 {
        return FrameRead::Corrupt { seq, len };
    }
    FrameRead::Valid { seq, flags, body: &rest[FRAME_HEADER_LEN..commit_at], len }
}

/// A frame body that passed its CRC but does not parse: written by a buggy or newer writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedBody;

/// Parses every entry of a frame body; all or nothing, so a transaction is never half applied.
pub fn parse_entries(mut body: &[u8]) -> Result<Vec<Entry<'_>>, MalformedBody> {
    let mut entries = Vec::new();
    while let Some((&tag, rest)) = body.split_first() {
        let (entry, rest) = match tag {
            TAG_PUT => {
                let kind = le16(rest.get(..2).ok_or(MalformedBody)?);
                let name_len = *rest.get(2).ok_or(MalformedBody)? as usize;
                let value_len = le32(rest.get(..7).ok_or(MalformedBody)?, 3) as usize;
                let rest = &rest[7..];
                let name = rest.get(..name_len).ok_or(MalformedBody)?;
                let value = rest.get(name_len..name_len + value_len).ok_or(MalformedBody)?;
                (Entry::Put { kind, name, value }, &rest[name_len + value_len..])
            }
            TAG_DELETE => {
                let kind = le16(rest.get(..2).ok_or(MalformedBody)?);
                let name_len = *rest.get(2).ok_or(MalformedBody)? as usize;
                let rest = &rest[3..];
                let name = rest.get(..name_len).ok_or(MalformedBody)?;
                (Entry::Delete { kind, name }, &rest[name_len..])
            }
            TAG_RETIRE => {
                let block_seq = le32(rest.get(..4).ok_or(MalformedBody)?, 0);
                (Entry::Retire { block_seq }, &rest[4..])
            }
            _ => return Err(MalformedBody),
        };
        entries.push(entry);
        body = rest;
    }
    Ok(entries)
}

/// Little-endian u16 from the first two bytes; callers pass at least two.
fn le16(bytes: &[u8]) -> u16 {
    u16::from_le_bytes([bytes[0], bytes[1]])
}

/// Little-endian u32 at `at`; callers pass at least `at + 4` bytes.
fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), the one zlib and Ethernet use; a
/// 1 KiB table built at compile time instead of a dependency.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The CRC-32/ISO-HDLC check value from the CRC catalogue.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn frame_round_trips_and_is_little_endian() {
        let entries = [
            Entry::Put { kind: 0x0102, name: b"a.ts.net", value: b"cert" },
            Entry::Delete { kind: 3, name: b"" },
            Entry::Retire { block_seq: 0x0A0B_0C0D },
        ];
        let frame = encode_frame(0x1122_3344, FLAG_GC_COPY, &entries, 1);
        assert_eq!(&frame[4..8], &[0x44, 0x33, 0x22, 0x11]);
        match read_frame(&frame, 0, 1) {
            FrameRead::Valid { seq, flags, body, len } => {
                assert_eq!((seq, flags, len), (0x1122_3344, FLAG_GC_COPY, frame.len()));
                assert_eq!(parse_entries(body), Ok(entries.to_vec()));
            }
            other => panic!("expected a valid frame, got {other:?}"),
        }
    }

    #[test]
    fn frames_are_padded_to_the_write_size_with_erased_bytes() {
        let frame = encode_frame(1, 0, &[Entry::Retire { block_seq: 1 }], 16);
        assert_eq!(frame.len(), 32);
        assert!(frame[FRAME_OVERHEAD + RETIRE_LEN..].iter().all(|&b| b == ERASED));
        assert!(matches!(read_frame(&frame, 0, 16), FrameRead::Valid { len: 32, .. }));
    }

    #[test]
    fn a_torn_frame_with_an_intact_header_is_corrupt_not_valid() {
        let frame = encode_frame(7, 0, &[Entry::Put { kind: 1, name: b"", value: &[0; 40] }], 1);
        let mut block = vec![ERASED; 128];
        block[..30].copy_from_slice(&frame[..30]);
        assert_eq!(read_frame(&block, 0, 1), FrameRead::Corrupt { seq: 7, len: frame.len() });
        block[..10].copy_from_slice(&frame[..10]);
        block[10..].fill(ERASED);
        assert_eq!(read_frame(&block, 0, 1), FrameRead::Garbage);
        block.fill(ERASED);
        assert_eq!(read_frame(&block, 0, 1), FrameRead::End);
    }

    #[test]
    fn a_length_running_past_the_block_is_garbage() {
        let frame = encode_frame(7, 0, &[Entry::Put { kind: 1, name: b"", value: &[0; 40] }], 1);
        assert_eq!(read_frame(&frame[..frame.len() - 1], 0, 1), FrameRead::Garbage);
    }

    #[test]
    fn malformed_bodies_are_refused_whole() {
        assert_eq!(parse_entries(&[9]), Err(MalformedBody));
        assert_eq!(parse_entries(&[TAG_PUT, 1, 0, 0, 5, 0, 0, 0, b'x']), Err(MalformedBody));
        assert_eq!(parse_entries(&[TAG_RETIRE, 1, 2, 3]), Err(MalformedBody));
        assert_eq!(parse_entries(&[]), Ok(vec![]));
    }

    #[test]
    fn block_header_round_trips_and_detects_every_single_bit_flip() {
        let header = BlockHeader { block_size: 4096, seq: 9, erase_count: 1234 };
        let bytes = header.encode();
        assert_eq!(BlockHeader::parse(&bytes), HeaderRead::Valid(header));
        assert_eq!(BlockHeader::parse(&[ERASED; BLOCK_HEADER_LEN]), HeaderRead::Blank);
        for bit in 0..BLOCK_HEADER_LEN * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(!matches!(BlockHeader::parse(&flipped), HeaderRead::Valid(_)), "bit {bit}");
        }
    }
}
