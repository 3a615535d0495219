//! The CBOR subset tailnet lock speaks, read with the reference decoder's rules and written in
//! CTAP2 canonical form.
//!
//! Why our own reader instead of a general CBOR crate: what the reference accepts is decided by
//! fxamacker/cbor v2.9.0 with the options in `ts:tka/tka.go` (`cborDecOpts`), and the hash of an
//! AUM is taken over its *re-encoding*, so every leniency of that decoder changes which bytes we
//! must hash. The rules below are those of `valid.go` (well-formedness pass over the whole item)
//! and `decode.go` (`parseMapToStruct`, `parseArrayToSlice`, `fillByteString`, `fillNil`,
//! `fillPositiveInt`) of that version; a generic crate would still need all of them on top.
//!
//! Reading happens in two passes: [`check_well_formed`] walks the whole item once (limits, no
//! tags, no indefinite lengths, no trailing bytes); after it passed, [`Reader`] may walk the same
//! bytes again without bounds surprises, and the typed decoders in `aum.rs`/`sig.rs` interpret them.

/// `MaxNestedLevels` in `ts:tka/tka.go` `cborDecOpts`: arrays and maps nest at most 16 deep,
/// counting the outermost one as level 1.
pub const MAX_NESTED_LEVELS: usize = 16;
/// `MaxArrayElements` in `ts:tka/tka.go` `cborDecOpts`.
pub const MAX_ARRAY_ELEMENTS: u64 = 4096;
/// `MaxMapPairs` in `ts:tka/tka.go` `cborDecOpts`.
pub const MAX_MAP_PAIRS: u64 = 1024;

/// Why bytes were refused as CBOR, or as the structure expected at a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CborError {
    /// The input ended inside a data item.
    Truncated,
    /// Bytes follow the single top-level item.
    TrailingBytes,
    /// Indefinite-length strings, arrays and maps are forbidden.
    IndefiniteLength,
    /// Tags are forbidden.
    Tag,
    /// Reserved additional information (28-30), a stray break, or a two-byte simple value below 32.
    Malformed,
    /// Nesting deeper than [`MAX_NESTED_LEVELS`].
    TooDeep,
    /// An array longer than [`MAX_ARRAY_ELEMENTS`] or a map larger than [`MAX_MAP_PAIRS`].
    TooLong,
    /// A map key appears twice.
    DuplicateKey,
    /// A value of the wrong type for its field (for example a text string where bytes belong).
    WrongType,
    /// An integer too large for its field.
    Overflow,
    /// A text string that is not valid UTF-8.
    InvalidUtf8,
}

impl core::fmt::Display for CborError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CborError::Truncated => "CBOR input ends inside an item",
            CborError::TrailingBytes => "bytes follow the CBOR item",
            CborError::IndefiniteLength => "indefinite-length CBOR is not allowed",
            CborError::Tag => "CBOR tags are not allowed",
            CborError::Malformed => "malformed CBOR",
            CborError::TooDeep => "CBOR nests too deep",
            CborError::TooLong => "CBOR array or map has too many elements",
            CborError::DuplicateKey => "CBOR map has a duplicate key",
            CborError::WrongType => "CBOR value has the wrong type for its field",
            CborError::Overflow => "CBOR integer too large for its field",
            CborError::InvalidUtf8 => "CBOR text string is not UTF-8",
        })
    }
}

pub const MAJOR_UINT: u8 = 0;
pub const MAJOR_NINT: u8 = 1;
pub const MAJOR_BYTES: u8 = 2;
pub const MAJOR_TEXT: u8 = 3;
pub const MAJOR_ARRAY: u8 = 4;
pub const MAJOR_MAP: u8 = 5;
pub const MAJOR_TAG: u8 = 6;
pub const MAJOR_SIMPLE: u8 = 7;

const AI_NULL: u8 = 22;
const AI_UNDEFINED: u8 = 23;
const AI_ONE_BYTE: u8 = 24;
const AI_INDEFINITE: u8 = 31;

/// The initial byte and argument of one data item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub major: u8,
    pub info: u8,
    pub arg: u64,
}

impl Head {
    /// `null` or `undefined`: both decode to a nil slice, map or pointer, and leave other kinds
    /// at their zero value.
    pub fn is_nil(&self) -> bool {
        self.major == MAJOR_SIMPLE && (self.info == AI_NULL || self.info == AI_UNDEFINED)
    }

    /// A simple value that decodes into an unsigned field as its number (`fillPositiveInt`):
    /// every simple value except false, true, null, undefined and the floats.
    fn simple_number(&self) -> Option<u64> {
        match self.info {
            0..=19 => Some(u64::from(self.info)),
            AI_ONE_BYTE => Some(self.arg),
            _ => None,
        }
    }
}

/// Reads the head at `pos`, returning it and the position after it. Rejects what the
/// reference's `wellformedHead` rejects.
pub fn read_head(data: &[u8], pos: usize) -> Result<(Head, usize), CborError> {
    let first = *data.get(pos).ok_or(CborError::Truncated)?;
    let (major, info) = (first >> 5, first & 0x1f);
    let mut at = pos + 1;
    let arg = match info {
        0..=23 => u64::from(info),
        24..=27 => {
            let n = 1usize << (info - 24);
            let bytes = data.get(at..at + n).ok_or(CborError::Truncated)?;
            at += n;
            bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
        }
        AI_INDEFINITE => match major {
            MAJOR_BYTES | MAJOR_TEXT | MAJOR_ARRAY | MAJOR_MAP => return Err(CborError::IndefiniteLength),
            _ => return Err(CborError::Malformed),
        },
        _ => return Err(CborError::Malformed),
    };
    if major == MAJOR_SIMPLE && info == AI_ONE_BYTE && arg < 32 {
        return Err(CborError::Malformed);
    }
    Ok((Head { major, info, arg }, at))
}

/// Checks that `data` holds exactly one well-formed item within the reference's limits.
pub fn check_well_formed(data: &[u8]) -> Result<(), CborError> {
    if data.is_empty() {
        return Err(CborError::Truncated);
    }
    let end = check_item(data, 0, 0)?;
    if end != data.len() {
        return Err(CborError::TrailingBytes);
    }
    Ok(())
}

fn check_item(data: &[u8], pos: usize, depth: usize) -> Result<usize, CborError> {
    let (head, mut at) = read_head(data, pos)?;
    match head.major {
        MAJOR_BYTES | MAJOR_TEXT => skip_payload(data, at, head.arg),
        MAJOR_ARRAY | MAJOR_MAP => {
            let depth = depth + 1;
            if depth > MAX_NESTED_LEVELS {
                return Err(CborError::TooDeep);
            }
            let limit = if head.major == MAJOR_ARRAY { MAX_ARRAY_ELEMENTS } else { MAX_MAP_PAIRS };
            if head.arg > limit {
                return Err(CborError::TooLong);
            }
            let items = if head.major == MAJOR_MAP { head.arg * 2 } else { head.arg };
            for _ in 0..items {
                at = check_item(data, at, depth)?;
            }
            Ok(at)
        }
        MAJOR_TAG => Err(CborError::Tag),
        _ => Ok(at),
    }
}

fn skip_payload(data: &[u8], at: usize, len: u64) -> Result<usize, CborError> {
    let len = usize::try_from(len).map_err(|_| CborError::Truncated)?;
    if data.len() - at < len {
        return Err(CborError::Truncated);
    }
    Ok(at + len)
}

/// Walks bytes that passed [`check_well_formed`]. Every method still returns errors rather than
/// assuming that, so a misuse costs an `Err`, never a panic.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8], pos: usize) -> Self {
        Reader { data, pos }
    }

    pub fn peek(&self) -> Result<Head, CborError> {
        read_head(self.data, self.pos).map(|(h, _)| h)
    }

    pub fn head(&mut self) -> Result<Head, CborError> {
        let (h, at) = read_head(self.data, self.pos)?;
        self.pos = at;
        Ok(h)
    }

    /// The payload of a byte or text string whose head was just read.
    pub fn payload(&mut self, len: u64) -> Result<&'a [u8], CborError> {
        let end = skip_payload(self.data, self.pos, len)?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// Skips one whole item.
    pub fn skip(&mut self) -> Result<(), CborError> {
        let h = self.head()?;
        match h.major {
            MAJOR_BYTES | MAJOR_TEXT => {
                self.payload(h.arg)?;
            }
            MAJOR_ARRAY | MAJOR_MAP => {
                let items = if h.major == MAJOR_MAP { h.arg.saturating_mul(2) } else { h.arg };
                for _ in 0..items {
                    self.skip()?;
                }
            }
            MAJOR_TAG => return Err(CborError::Tag),
            _ => {}
        }
        Ok(())
    }

    /// An unsigned field (`uint8`, `uint`, `uint64`): integers up to `max`, a simple value as its
    /// number, and null/undefined as zero, as the reference does.
    pub fn uint(&mut self, max: u64) -> Result<u64, CborError> {
        let h = self.head()?;
        let value = match h.major {
            MAJOR_UINT => h.arg,
            MAJOR_SIMPLE if h.is_nil() => 0,
            MAJOR_SIMPLE => h.simple_number().ok_or(CborError::WrongType)?,
            MAJOR_NINT => return Err(CborError::Overflow),
            _ => {
                self.pos = self.pos_after_payload(h)?;
                return Err(CborError::WrongType);
            }
        };
        if value > max {
            return Err(CborError::Overflow);
        }
        Ok(value)
    }

    fn pos_after_payload(&self, h: Head) -> Result<usize, CborError> {
        match h.major {
            MAJOR_BYTES | MAJOR_TEXT => skip_payload(self.data, self.pos, h.arg),
            _ => Ok(self.pos),
        }
    }

    /// A `[]byte` field: a byte string, an array of byte-sized numbers, or nil.
    pub fn byte_field(&mut self) -> Result<Option<ByteField<'a>>, CborError> {
        let h = self.head()?;
        match h.major {
            MAJOR_BYTES => Ok(Some(ByteField::Str(self.payload(h.arg)?))),
            MAJOR_ARRAY => {
                let start = self.pos;
                for _ in 0..h.arg {
                    self.uint(u64::from(u8::MAX))?;
                }
                let len = usize::try_from(h.arg).map_err(|_| CborError::TooLong)?;
                Ok(Some(ByteField::Array { items: &self.data[start..self.pos], len }))
            }
            MAJOR_SIMPLE if h.is_nil() => Ok(None),
            _ => Err(CborError::WrongType),
        }
    }

    /// A `string` value: UTF-8 text, or null/undefined as the empty string.
    pub fn text(&mut self) -> Result<&'a [u8], CborError> {
        let h = self.head()?;
        match h.major {
            MAJOR_TEXT => {
                let t = self.payload(h.arg)?;
                core::str::from_utf8(t).map_err(|_| CborError::InvalidUtf8)?;
                Ok(t)
            }
            MAJOR_SIMPLE if h.is_nil() => Ok(&[]),
            _ => Err(CborError::WrongType),
        }
    }
}

/// A `[]byte` value as it appeared on the wire. The reference also accepts an array of small
/// integers for a byte slice, and re-encodes either form as a byte string.
#[derive(Clone, Copy, Debug)]
pub enum ByteField<'a> {
    Str(&'a [u8]),
    /// The encoded items of an array whose elements each decoded to one byte.
    Array {
        items: &'a [u8],
        len: usize,
    },
}

impl<'a> ByteField<'a> {
    pub fn len(&self) -> usize {
        match self {
            ByteField::Str(s) => s.len(),
            ByteField::Array { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> ByteIter<'a> {
        match *self {
            ByteField::Str(s) => ByteIter::Str(s.iter()),
            ByteField::Array { items, len } => ByteIter::Array { reader: Reader::new(items, 0), left: len },
        }
    }

    pub fn eq_bytes(&self, other: &[u8]) -> bool {
        match self {
            ByteField::Str(s) => *s == other,
            _ => self.len() == other.len() && self.iter().eq(other.iter().copied()),
        }
    }

    pub fn same_as(&self, other: &ByteField<'_>) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }

    /// The bytes as an array, if exactly `N` long.
    pub fn to_array<const N: usize>(&self) -> Option<[u8; N]> {
        if self.len() != N {
            return None;
        }
        let mut out = [0u8; N];
        for (o, b) in out.iter_mut().zip(self.iter()) {
            *o = b;
        }
        Some(out)
    }

    pub fn encode(&self, out: &mut impl Sink) {
        write_head(out, MAJOR_BYTES, self.len() as u64);
        match self {
            ByteField::Str(s) => out.put(s),
            ByteField::Array { .. } => self.iter().for_each(|b| out.put(&[b])),
        }
    }
}

pub enum ByteIter<'a> {
    Str(core::slice::Iter<'a, u8>),
    Array { reader: Reader<'a>, left: usize },
}

impl Iterator for ByteIter<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        match self {
            ByteIter::Str(it) => it.next().copied(),
            ByteIter::Array { reader, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                // The array was checked item by item when the field was read.
                reader.uint(u64::from(u8::MAX)).ok().map(|v| v as u8)
            }
        }
    }
}

/// What a struct field's map key turned out to be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MapKey<'a> {
    Field(u64),
    UnknownInt(i64),
    UnknownText(&'a [u8]),
}

/// Decodes a CBOR map into a struct whose fields have the integer keys in `fields`, the way
/// `parseMapToStruct` does: integer keys and text keys spelling the same number both name a
/// field; any other key type is an error; unknown keys are skipped but must not repeat; a field
/// must not appear twice. `visit` gets each known field's key and a reader at its value, and must
/// consume exactly that value.
pub fn decode_struct<'a>(
    r: &mut Reader<'a>,
    fields: &[u64],
    mut visit: impl FnMut(u64, &mut Reader<'a>) -> Result<(), CborError>,
) -> Result<(), CborError> {
    let h = r.head()?;
    if h.major != MAJOR_MAP {
        return Err(CborError::WrongType);
    }
    let entries_start = r.pos;
    let mut seen_fields: u32 = 0;
    for index in 0..h.arg {
        let key = read_struct_key(r, fields)?;
        match key {
            MapKey::Field(n) => {
                let bit = 1u32 << fields.iter().position(|&f| f == n).unwrap_or(0);
                if seen_fields & bit != 0 {
                    return Err(CborError::DuplicateKey);
                }
                seen_fields |= bit;
                visit(n, r)?;
            }
            unknown => {
                if unknown_key_seen_before(r.data, entries_start, index, unknown, fields)? {
                    return Err(CborError::DuplicateKey);
                }
                r.skip()?;
            }
        }
    }
    Ok(())
}

fn read_struct_key<'a>(r: &mut Reader<'a>, fields: &[u64]) -> Result<MapKey<'a>, CborError> {
    let h = r.head()?;
    match h.major {
        MAJOR_UINT => Ok(match fields.iter().find(|&&f| f == h.arg) {
            Some(&f) => MapKey::Field(f),
            // Keys above i64::MAX wrap in the reference (`int64(val)`); they still only match
            // other keys with the same bits.
            None => MapKey::UnknownInt(h.arg as i64),
        }),
        MAJOR_NINT => {
            let v = i64::try_from(h.arg).map_err(|_| CborError::Overflow)?;
            Ok(MapKey::UnknownInt(-1 - v))
        }
        MAJOR_TEXT => {
            let t = r.payload(h.arg)?;
            core::str::from_utf8(t).map_err(|_| CborError::InvalidUtf8)?;
            Ok(match fields.iter().find(|&&f| text_is_decimal(t, f)) {
                Some(&f) => MapKey::Field(f),
                None => MapKey::UnknownText(t),
            })
        }
        _ => Err(CborError::WrongType),
    }
}

/// True if `text` is the decimal spelling of `n` the reference uses as the field's name.
fn text_is_decimal(text: &[u8], n: u64) -> bool {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    text == &digits[at..]
}

fn unknown_key_seen_before(
    data: &[u8],
    entries_start: usize,
    index: u64,
    key: MapKey<'_>,
    fields: &[u64],
) -> Result<bool, CborError> {
    let mut r = Reader::new(data, entries_start);
    for _ in 0..index {
        let earlier = read_struct_key(&mut r, fields)?;
        if earlier == key {
            return Ok(true);
        }
        r.skip()?;
    }
    Ok(false)
}

/// Where encoded bytes go: a hasher or a buffer.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

/// Writes a head in the shortest form (CTAP2 canonical).
pub fn write_head(out: &mut impl Sink, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.put(&[m | arg as u8]);
    } else if arg <= 0xff {
        out.put(&[m | 24, arg as u8]);
    } else if arg <= 0xffff {
        out.put(&[m | 25]);
        out.put(&(arg as u16).to_be_bytes());
    } else if arg <= 0xffff_ffff {
        out.put(&[m | 26]);
        out.put(&(arg as u32).to_be_bytes());
    } else {
        out.put(&[m | 27]);
        out.put(&arg.to_be_bytes());
    }
}

pub fn write_null(out: &mut impl Sink) {
    out.put(&[(MAJOR_SIMPLE << 5) | AI_NULL]);
}

pub fn write_bytes(out: &mut impl Sink, bytes: &[u8]) {
    write_head(out, MAJOR_BYTES, bytes.len() as u64);
    out.put(bytes);
}

pub fn write_text(out: &mut impl Sink, text: &[u8]) {
    write_head(out, MAJOR_TEXT, text.len() as u64);
    out.put(text);
}

/// A [`Sink`] that hashes with BLAKE2s-256.
pub struct HashSink(pub blake2::Blake2s256);

impl Sink for HashSink {
    fn put(&mut self, bytes: &[u8]) {
        blake2::Digest::update(&mut self.0, bytes);
    }
}

/// A [`Sink`] into a caller's buffer; remembers if it ran out of room instead of panicking.
pub struct SliceSink<'b> {
    pub buf: &'b mut [u8],
    pub len: usize,
    pub overflow: bool,
}

impl<'b> SliceSink<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        SliceSink { buf, len: 0, overflow: false }
    }
}

impl Sink for SliceSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            _ => self.overflow = true,
        }
    }
}

/// A growable buffer as a [`Sink`], for hosts (tests, fuzz targets, the agent).
#[cfg(feature = "std")]
impl Sink for std::vec::Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Sorts text-keyed map entries the CTAP2 way: shorter encoded key first, then bytewise. For text
/// keys that is the order of their encoded bytes, because the head carries the length.
pub fn text_key_order(a: &[u8], b: &[u8]) -> core::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    struct Buf(heapless::Vec<u8, 64>);
    impl Sink for Buf {
        fn put(&mut self, bytes: &[u8]) {
            let _ = self.0.extend_from_slice(bytes);
        }
    }

    fn head_bytes(major: u8, arg: u64) -> heapless::Vec<u8, 64> {
        let mut b = Buf(heapless::Vec::new());
        write_head(&mut b, major, arg);
        b.0
    }

    #[test]
    fn heads_are_written_in_the_shortest_form() {
        assert_eq!(&head_bytes(MAJOR_UINT, 23)[..], &[0x17]);
        assert_eq!(&head_bytes(MAJOR_UINT, 24)[..], &[0x18, 24]);
        assert_eq!(&head_bytes(MAJOR_BYTES, 256)[..], &[0x59, 1, 0]);
        assert_eq!(&head_bytes(MAJOR_MAP, 65536)[..], &[0xba, 0, 1, 0, 0]);
        assert_eq!(&head_bytes(MAJOR_UINT, 1 << 32)[..], &[0x1b, 0, 0, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn well_formedness_follows_the_reference_limits() {
        assert_eq!(check_well_formed(&[]), Err(CborError::Truncated));
        assert_eq!(check_well_formed(&[0x01, 0x02]), Err(CborError::TrailingBytes));
        assert_eq!(check_well_formed(&[0x5f, 0xff]), Err(CborError::IndefiniteLength));
        assert_eq!(check_well_formed(&[0xc1, 0x01]), Err(CborError::Tag));
        assert_eq!(check_well_formed(&[0xf8, 0x10]), Err(CborError::Malformed));
        assert_eq!(check_well_formed(&[0x1c]), Err(CborError::Malformed));
        assert_eq!(check_well_formed(&[0x5a, 0xff, 0xff, 0xff, 0xff]), Err(CborError::Truncated));
        let mut deep = [0x81u8; 17];
        deep[16] = 0x80;
        assert_eq!(check_well_formed(&deep[1..]), Ok(()));
        assert_eq!(check_well_formed(&deep), Err(CborError::TooDeep));
        assert_eq!(check_well_formed(&[0x99, 0x10, 0x01]), Err(CborError::TooLong));
        assert_eq!(check_well_formed(&[0xb9, 0x04, 0x01]), Err(CborError::TooLong));
    }

    #[test]
    fn struct_keys_match_as_integers_or_their_decimal_text() {
        assert!(text_is_decimal(b"23", 23));
        assert!(text_is_decimal(b"0", 0));
        assert!(!text_is_decimal(b"023", 23));
        // {"1": 5, 9: 0, "9": 0} -> field 1 = 5; int 9 and text "9" are different unknown keys.
        let data = [0xa3, 0x61, b'1', 0x05, 0x09, 0x00, 0x61, b'9', 0x00];
        let mut seen = None;
        decode_struct(&mut Reader::new(&data, 0), &[1], |f, r| {
            seen = Some((f, r.uint(255)?));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, Some((1, 5)));
        let dup = [0xa2, 0x01, 0x05, 0x61, b'1', 0x06];
        assert_eq!(
            decode_struct(&mut Reader::new(&dup, 0), &[1], |_, r| r.uint(255).map(|_| ())),
            Err(CborError::DuplicateKey)
        );
    }

    #[test]
    fn byte_fields_accept_arrays_of_small_integers() {
        let data = [0x83, 0x01, 0x18, 0xff, 0xf6];
        let field = Reader::new(&data, 0).byte_field().unwrap().unwrap();
        assert_eq!(field.len(), 3);
        assert!(field.eq_bytes(&[1, 255, 0]));
        assert_eq!(Reader::new(&[0x81, 0x19, 0x01, 0x00], 0).byte_field().unwrap_err(), CborError::Overflow);
        assert_eq!(Reader::new(&[0x61, b'a'], 0).byte_field().unwrap_err(), CborError::WrongType);
    }
}
