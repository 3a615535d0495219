//! Framing that sits on top of the Noise stream: the optional early payload the server sends first
//! (`ts:control/ts2021/conn.go`), and the length prefix of each map response in the
//! `/machine/map` body (`ts:control/controlclient/direct.go`, `hs:hscontrol/poll.go`).

/// Magic that opens the early payload: `\xff\xff\xffTS` (`ts:control/ts2021/conn.go`).
pub const EARLY_PAYLOAD_MAGIC: [u8; 5] = [0xff, 0xff, 0xff, b'T', b'S'];
/// The client peeks this many bytes: the size of an HTTP/2 frame header, so that when no early
/// payload was sent, the peeked bytes are handed back to HTTP/2 whole.
pub const EARLY_PAYLOAD_PEEK: usize = 9;
/// Our cap on the early payload's JSON; it only carries `{"nodeKeyChallenge":"chalpub:<64 hex>"}`.
pub const EARLY_PAYLOAD_MAX: usize = 4096;

/// Size of the little-endian uint32 length that precedes each map response.
pub const MAP_LENGTH_PREFIX: usize = 4;
/// Largest map response (compressed frame) we accept; tsp uses 4 MiB
/// (`ts:control/tsp/map.go` `DefaultMaxMessageSize`); a netmap of a big tailnet can approach it.
pub const MAP_MESSAGE_MAX: usize = 8 << 20;

/// What the first [`EARLY_PAYLOAD_PEEK`] bytes of the Noise stream say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyPrefix {
    /// An early payload of this many JSON bytes follows.
    Payload(usize),
    /// No early payload: the bytes are the start of HTTP/2 and must be replayed to it.
    Http2,
}

/// Why framing was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// The early payload announces more than [`EARLY_PAYLOAD_MAX`] bytes.
    EarlyPayloadTooBig(u32),
    /// A map response announces more than [`MAP_MESSAGE_MAX`] bytes.
    MapMessageTooBig(u32),
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::EarlyPayloadTooBig(n) => write!(f, "early payload of {n} bytes is too big"),
            FrameError::MapMessageTooBig(n) => write!(f, "map response of {n} bytes is too big"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FrameError {}

/// Classifies the first nine bytes of the decrypted stream.
pub fn early_prefix(peek: &[u8; EARLY_PAYLOAD_PEEK]) -> Result<EarlyPrefix, FrameError> {
    if peek[..5] != EARLY_PAYLOAD_MAGIC {
        return Ok(EarlyPrefix::Http2);
    }
    let len = u32::from_be_bytes([peek[5], peek[6], peek[7], peek[8]]);
    if len as usize > EARLY_PAYLOAD_MAX {
        return Err(FrameError::EarlyPayloadTooBig(len));
    }
    Ok(EarlyPrefix::Payload(len as usize))
}

/// Splits a buffer of map-stream bytes into messages. Feed it the bytes received so far; it
/// returns the first complete message and how many bytes it used, or `None` if more are needed.
pub fn next_map_message(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(prefix) = buf.get(..MAP_LENGTH_PREFIX) else { return Ok(None) };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len as usize > MAP_MESSAGE_MAX {
        return Err(FrameError::MapMessageTooBig(len));
    }
    let end = MAP_LENGTH_PREFIX + len as usize;
    Ok(buf.get(MAP_LENGTH_PREFIX..end).map(|body| (body, end)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn early_payload_is_recognised_with_big_endian_length() {
        let peek = [0xff, 0xff, 0xff, b'T', b'S', 0, 0, 1, 2];
        assert_eq!(early_prefix(&peek), Ok(EarlyPrefix::Payload(258)));
    }

    #[test]
    fn http2_settings_frame_is_not_an_early_payload() {
        // An HTTP/2 SETTINGS frame header: length 18, type 4, flags 0, stream 0.
        let peek = [0, 0, 18, 4, 0, 0, 0, 0, 0];
        assert_eq!(early_prefix(&peek), Ok(EarlyPrefix::Http2));
    }

    #[test]
    fn oversized_early_payload_is_refused() {
        let peek = [0xff, 0xff, 0xff, b'T', b'S', 0x7f, 0, 0, 0];
        assert_eq!(early_prefix(&peek), Err(FrameError::EarlyPayloadTooBig(0x7f00_0000)));
    }

    #[test]
    fn map_messages_use_little_endian_length() {
        let stream = [3, 0, 0, 0, b'a', b'b', b'c', 1, 0, 0, 0, b'z'];
        let (first, used) = next_map_message(&stream).unwrap().unwrap();
        assert_eq!((first, used), (&b"abc"[..], 7));
        let (second, used2) = next_map_message(&stream[used..]).unwrap().unwrap();
        assert_eq!((second, used2), (&b"z"[..], 5));
        assert_eq!(next_map_message(&stream[used + used2..]), Ok(None));
    }

    #[test]
    fn partial_map_message_waits_for_more() {
        assert_eq!(next_map_message(&[5, 0, 0]), Ok(None));
        assert_eq!(next_map_message(&[5, 0, 0, 0, 1, 2]), Ok(None));
    }

    #[test]
    fn oversized_map_message_is_refused() {
        assert_eq!(next_map_message(&[0, 0, 0, 0x10, 0]), Err(FrameError::MapMessageTooBig(0x1000_0000)));
    }
}
