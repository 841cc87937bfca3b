//! DRPC's wire format, as storj/drpc v0.0.34 writes it (its `drpcwire`
//! package): frames, varints, packets assembled from frames, and the bodies of
//! the seven packet kinds. Pure: bytes in, values out, no I/O.
//!
//! A frame is a control byte (bit 7: control, bits 1-6: kind, bit 0: done),
//! three unsigned LEB128 varints (stream id, message id, data length) and the
//! data. A packet is the frames sharing one (stream, message) id, up to and
//! including the first with *done* set.
//!
//! [`Decoder`] is the only way bytes from a peer become packets. It keeps
//! these rules, whatever the input:
//! - an assembled packet holds at most [`MAX_PACKET_SIZE`] bytes, and a frame
//!   header is checked against that cap (and what the packet already holds)
//!   before its data is waited for, so no claimed length is ever trusted;
//! - ids never go backwards: a frame with a lower (stream, message) id than
//!   the last one, or the id of a packet already completed, is an error;
//! - the kind does not change inside a packet; the control bit on any frame
//!   makes the whole packet a control packet;
//! - it never panics.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::metadata::{self, Metadata};

/// The largest packet a peer may send (drpc's `MaximumBufferSize`, 4 MiB in
/// drpc and in coder).
pub const MAX_PACKET_SIZE: usize = 4 << 20;

/// The writer splits packets into frames of this much data (drpc's split
/// size 0).
pub const FRAME_SPLIT: usize = 64 << 10;

/// The longest varint accepted: ten bytes hold 64 bits.
pub const MAX_VARINT_LEN: usize = 10;

/// The longest frame header: the control byte and three varints.
pub const MAX_FRAME_HEADER: usize = 1 + 3 * MAX_VARINT_LEN;

/// drpc's error code for an RPC the server does not implement
/// (`drpcerr.Unimplemented`); coder's agent tests for it.
pub const UNIMPLEMENTED: u64 = 12;

/// A packet id. Ordered as drpc orders them: by stream, then by message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id {
    pub stream: u64,
    pub message: u64,
}

impl Id {
    pub const fn new(stream: u64, message: u64) -> Id {
        Id { stream, message }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<s:{} m:{}>", self.stream, self.message)
    }
}

/// The kind of a packet (bits 1-6 of the control byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The body is the RPC name.
    Invoke,
    /// The body is one encoded message (possibly empty).
    Message,
    /// The body is an 8-byte big-endian code and a UTF-8 message.
    Error,
    /// Soft cancel; empty, sent with the control bit.
    Cancel,
    /// The RPC is dead; empty.
    Close,
    /// The sender will send no more messages; empty.
    CloseSend,
    /// Metadata for the Invoke of the same stream that follows.
    InvokeMetadata,
    /// Any other value of the six kind bits (0 is reserved).
    Unknown(u8),
}

impl Kind {
    /// The kind with these six bits (higher bits are ignored).
    pub fn from_bits(bits: u8) -> Kind {
        match bits & 0x3f {
            1 => Kind::Invoke,
            2 => Kind::Message,
            3 => Kind::Error,
            4 => Kind::Cancel,
            5 => Kind::Close,
            6 => Kind::CloseSend,
            7 => Kind::InvokeMetadata,
            other => Kind::Unknown(other),
        }
    }

    /// The six bits of this kind.
    pub fn bits(self) -> u8 {
        match self {
            Kind::Invoke => 1,
            Kind::Message => 2,
            Kind::Error => 3,
            Kind::Cancel => 4,
            Kind::Close => 5,
            Kind::CloseSend => 6,
            Kind::InvokeMetadata => 7,
            Kind::Unknown(bits) => bits & 0x3f,
        }
    }
}

/// What makes bytes from a peer unacceptable. Each of these ends the
/// transport: after one, the byte stream cannot be trusted to be in step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("varint longer than 64 bits")]
    VarintOverflow,
    #[error("packet larger than {MAX_PACKET_SIZE} bytes")]
    TooLarge,
    #[error("id monotonicity violation: {got} after {last}")]
    IdRegression { got: Id, last: Id },
    #[error("packet kind change inside packet {id}: {from:?} then {to:?}")]
    KindChange { id: Id, from: Kind, to: Kind },
    #[error("unknown packet kind {0} without the control bit")]
    UnknownKind(u8),
    #[error("malformed invoke metadata: {0}")]
    Metadata(&'static str),
}

/// Reads an unsigned LEB128 varint from the start of `buf`: `Ok(None)` if
/// `buf` ends first, else the value and how many bytes it took. More than
/// 64 bits is an error.
pub fn read_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, WireError> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(MAX_VARINT_LEN) {
        // The tenth byte holds bit 63 only.
        if i == MAX_VARINT_LEN - 1 && byte > 1 {
            return Err(WireError::VarintOverflow);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(Some((value, i + 1)));
        }
    }
    Ok(None)
}

/// Appends `value` as an unsigned LEB128 varint.
pub fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A frame header: everything but the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub id: Id,
    pub kind: Kind,
    pub done: bool,
    pub control: bool,
    /// The data length as claimed; not yet checked against anything.
    pub len: u64,
}

/// Parses the frame header at the start of `buf`: `Ok(None)` if `buf` ends
/// first, else the header and its length in bytes.
pub fn parse_frame_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, WireError> {
    let Some((&control, mut rest)) = buf.split_first() else {
        return Ok(None);
    };
    let mut fields = [0u64; 3];
    let mut used = 1;
    for field in &mut fields {
        let Some((value, n)) = read_varint(rest)? else {
            return Ok(None);
        };
        *field = value;
        used += n;
        rest = &rest[n..];
    }
    let [stream, message, len] = fields;
    let header = FrameHeader {
        id: Id::new(stream, message),
        kind: Kind::from_bits(control >> 1),
        done: control & 0x01 != 0,
        control: control & 0x80 != 0,
        len,
    };
    Ok(Some((header, used)))
}

/// Appends one frame.
pub fn write_frame(out: &mut Vec<u8>, id: Id, kind: Kind, done: bool, control: bool, data: &[u8]) {
    let mut byte = kind.bits() << 1;
    if done {
        byte |= 0x01;
    }
    if control {
        byte |= 0x80;
    }
    out.push(byte);
    write_varint(out, id.stream);
    write_varint(out, id.message);
    write_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// Appends a packet, split into frames of at most [`FRAME_SPLIT`] bytes of
/// data (an empty packet is one empty frame), as drpc's writer does. The
/// caller keeps `data` within [`MAX_PACKET_SIZE`]; a peer refuses more.
pub fn write_packet(out: &mut Vec<u8>, id: Id, kind: Kind, control: bool, data: &[u8]) {
    let mut rest = data;
    loop {
        let (chunk, tail) = rest.split_at(rest.len().min(FRAME_SPLIT));
        write_frame(out, id, kind, tail.is_empty(), control, chunk);
        if tail.is_empty() {
            return;
        }
        rest = tail;
    }
}

/// A packet assembled from its frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub id: Id,
    pub kind: Kind,
    /// Whether any of its frames had the control bit.
    pub control: bool,
    pub data: Bytes,
}

/// A packet's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The RPC name (bytes that are not UTF-8 are replaced, so such a name
    /// matches no method).
    Invoke(String),
    Message(Bytes),
    Error(RpcError),
    Cancel,
    Close,
    CloseSend,
    InvokeMetadata(Metadata),
    /// An unknown kind with the control bit, which a receiver must ignore.
    Ignored,
}

impl Packet {
    /// Decodes the body. An unknown kind without the control bit is an error
    /// (drpc's `HandlePacket`); bodies of Cancel, Close and CloseSend are not
    /// looked at, as in drpc.
    pub fn body(&self) -> Result<Body, WireError> {
        Ok(match self.kind {
            Kind::Invoke => Body::Invoke(String::from_utf8_lossy(&self.data).into_owned()),
            Kind::Message => Body::Message(self.data.clone()),
            Kind::Error => Body::Error(RpcError::decode(&self.data)),
            Kind::Cancel => Body::Cancel,
            Kind::Close => Body::Close,
            Kind::CloseSend => Body::CloseSend,
            Kind::InvokeMetadata => Body::InvokeMetadata(metadata::decode(&self.data)?),
            Kind::Unknown(_) if self.control => Body::Ignored,
            Kind::Unknown(bits) => return Err(WireError::UnknownKind(bits)),
        })
    }
}

/// The body of an Error packet: a code (0 means none) and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (drpc code {code})")]
pub struct RpcError {
    pub code: u64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: u64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// An error without a code (code 0), as most of coderd's are.
    pub fn message(message: impl Into<String>) -> RpcError {
        RpcError::new(0, message)
    }

    /// Code 12: the method is not implemented. Coder's agent stops some loops
    /// cleanly on it (PushContextState).
    pub fn unimplemented(message: impl Into<String>) -> RpcError {
        RpcError::new(UNIMPLEMENTED, message)
    }

    /// The packet body: the code as 8 big-endian bytes, then the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.message.len());
        out.extend_from_slice(&self.code.to_be_bytes());
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    /// Reads a packet body. As drpc does, a body shorter than 8 bytes is a
    /// message without a code; bytes that are not UTF-8 are replaced.
    pub fn decode(data: &[u8]) -> RpcError {
        match data.split_first_chunk::<8>() {
            Some((code, message)) => {
                RpcError::new(u64::from_be_bytes(*code), String::from_utf8_lossy(message))
            }
            None => RpcError::message(String::from_utf8_lossy(data)),
        }
    }
}

/// The packet being assembled.
#[derive(Debug)]
struct Partial {
    id: Id,
    kind: Kind,
    control: bool,
    data: BytesMut,
}

/// Turns bytes from a peer into packets, keeping the rules in this module's
/// doc. Feed it with [`Decoder::extend`] (or read into
/// [`Decoder::buffer_mut`]) and call [`Decoder::decode`] until it returns
/// `Ok(None)`. After an error the decoder must not be used again.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes received and not yet taken into a packet: less than one frame
    /// whenever `decode` has returned `Ok(None)`.
    buf: BytesMut,
    partial: Option<Partial>,
    /// The id of the last frame taken; `last_done` when it completed its
    /// packet, so that id may not be seen again.
    last: Id,
    last_done: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            partial: None,
            // As drpc: ids start at stream 1, message 1, so 0 is never valid.
            last: Id::new(1, 1),
            last_done: false,
        }
    }

    /// Appends bytes received.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The receive buffer, to read into directly (`read_buf`).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes held: received but unparsed, plus the packet being assembled.
    /// After `decode` returns `Ok(None)` this is at most
    /// `MAX_PACKET_SIZE + MAX_FRAME_HEADER`.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.partial.as_ref().map_or(0, |p| p.data.len())
    }

    /// Gives back the receive buffer's memory when nothing is held and it
    /// has more than `keep` bytes of room (after a large packet, an idle
    /// transport must not keep its allocation).
    pub fn release_if_idle(&mut self, keep: usize) {
        if self.at_boundary() && self.buf.capacity() > keep {
            self.buf = BytesMut::new();
        }
    }

    /// Whether the input so far ends on a packet boundary (nothing half
    /// received), so an end of input here is clean.
    pub fn at_boundary(&self) -> bool {
        self.buf.is_empty() && self.partial.is_none()
    }

    /// The next complete packet, `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self) -> Result<Option<Packet>, WireError> {
        loop {
            let Some((header, header_len)) = parse_frame_header(&self.buf)? else {
                return Ok(None);
            };
            if header.id < self.last || (header.id == self.last && self.last_done) {
                return Err(WireError::IdRegression {
                    got: header.id,
                    last: self.last,
                });
            }
            let partial = match &mut self.partial {
                Some(p) if p.id == header.id => {
                    if p.kind != header.kind {
                        return Err(WireError::KindChange {
                            id: header.id,
                            from: p.kind,
                            to: header.kind,
                        });
                    }
                    p
                }
                slot => {
                    // A new id: what was half assembled is dropped, as drpc
                    // does, before this frame's data is waited for.
                    self.last = header.id;
                    self.last_done = false;
                    slot.insert(Partial {
                        id: header.id,
                        kind: header.kind,
                        control: false,
                        data: BytesMut::new(),
                    })
                }
            };
            // What the packet holds never exceeds the cap: no underflow.
            if header.len > (MAX_PACKET_SIZE - partial.data.len()) as u64 {
                return Err(WireError::TooLarge);
            }
            let len = header.len as usize;
            if self.buf.len() - header_len < len {
                return Ok(None);
            }
            self.buf.advance(header_len);
            let data = self.buf.split_to(len);
            partial.control |= header.control;
            if partial.data.is_empty() {
                partial.data = data;
            } else {
                partial.data.extend_from_slice(&data);
            }
            if header.done {
                self.last_done = true;
                if let Some(p) = self.partial.take() {
                    return Ok(Some(Packet {
                        id: p.id,
                        kind: p.kind,
                        control: p.control,
                        data: p.data.freeze(),
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET_MANIFEST: &str = "/coder.agent.v2.Agent/GetManifest";

    fn decode_all(bytes: &[u8]) -> Result<Vec<Packet>, WireError> {
        let mut d = Decoder::new();
        d.extend(bytes);
        let mut out = Vec::new();
        while let Some(p) = d.decode()? {
            out.push(p);
        }
        Ok(out)
    }

    fn packet(stream: u64, message: u64, kind: Kind, control: bool, data: &[u8]) -> Packet {
        Packet {
            id: Id::new(stream, message),
            kind,
            control,
            data: Bytes::copy_from_slice(data),
        }
    }

    /// CONNECTIVITY.md §1.3: a unary call's client bytes.
    fn client_unary_bytes() -> Vec<u8> {
        let mut bytes = vec![0x03, 0x01, 0x01, 0x21];
        bytes.extend_from_slice(GET_MANIFEST.as_bytes());
        bytes.extend_from_slice(&[0x05, 0x01, 0x02, 0x00]);
        bytes.extend_from_slice(&[0x0D, 0x01, 0x03, 0x00]);
        bytes
    }

    #[test]
    fn the_documented_client_bytes_decode() {
        assert_eq!(GET_MANIFEST.len(), 0x21);
        let packets = decode_all(&client_unary_bytes()).unwrap();
        assert_eq!(
            packets,
            vec![
                packet(1, 1, Kind::Invoke, false, GET_MANIFEST.as_bytes()),
                packet(1, 2, Kind::Message, false, b""),
                packet(1, 3, Kind::CloseSend, false, b""),
            ]
        );
        assert_eq!(
            packets[0].body().unwrap(),
            Body::Invoke(GET_MANIFEST.to_string())
        );
        assert_eq!(packets[1].body().unwrap(), Body::Message(Bytes::new()));
        assert_eq!(packets[2].body().unwrap(), Body::CloseSend);
    }

    #[test]
    fn the_documented_bytes_are_what_the_writer_writes() {
        let mut out = Vec::new();
        write_packet(
            &mut out,
            Id::new(1, 1),
            Kind::Invoke,
            false,
            GET_MANIFEST.as_bytes(),
        );
        write_packet(&mut out, Id::new(1, 2), Kind::Message, false, b"");
        write_packet(&mut out, Id::new(1, 3), Kind::CloseSend, false, b"");
        assert_eq!(out, client_unary_bytes());

        // The server's answer: `05 01 01 <len> …`, then `0D 01 02 00`.
        let mut out = Vec::new();
        write_packet(
            &mut out,
            Id::new(1, 1),
            Kind::Message,
            false,
            b"\x0a\x10abc",
        );
        write_packet(&mut out, Id::new(1, 2), Kind::CloseSend, false, b"");
        assert_eq!(
            out,
            b"\x05\x01\x01\x05\x0a\x10abc\x0D\x01\x02\x00".as_slice()
        );
    }

    #[test]
    fn control_bytes_of_every_kind() {
        // The table in CONNECTIVITY.md §1.3, single frame with done set;
        // Cancel is sent with the control bit.
        let cases = [
            (Kind::Invoke, false, 0x03),
            (Kind::Message, false, 0x05),
            (Kind::Error, false, 0x07),
            (Kind::Cancel, true, 0x89),
            (Kind::Close, false, 0x0B),
            (Kind::CloseSend, false, 0x0D),
            (Kind::InvokeMetadata, false, 0x0F),
        ];
        for (kind, control, byte) in cases {
            let mut out = Vec::new();
            write_packet(&mut out, Id::new(1, 1), kind, control, b"");
            assert_eq!(out, vec![byte, 1, 1, 0], "{kind:?}");
            let (h, n) = parse_frame_header(&out).unwrap().unwrap();
            assert_eq!((h.kind, h.control, h.done, n), (kind, control, true, 4));
            assert_eq!(Kind::from_bits(kind.bits()), kind);
        }
        assert_eq!(Kind::from_bits(0), Kind::Unknown(0));
        assert_eq!(Kind::from_bits(63), Kind::Unknown(63));
        assert_eq!(Kind::Unknown(63).bits(), 63);
        assert_eq!(Kind::from_bits(0x41), Kind::Invoke, "high bits ignored");
    }

    #[test]
    fn varints_round_trip_and_overflow_is_an_error() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(read_varint(&out).unwrap(), Some((v, out.len())), "{v}");
            // Every proper prefix needs more bytes.
            for cut in 0..out.len() {
                assert_eq!(read_varint(&out[..cut]).unwrap(), None);
            }
        }
        let mut max = Vec::new();
        write_varint(&mut max, u64::MAX);
        assert_eq!(
            max,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(read_varint(&[0xac, 0x02]).unwrap(), Some((300, 2)));
        // A tenth byte above 1 is bit 64 or more.
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(read_varint(&too_big), Err(WireError::VarintOverflow));
        // Eleven bytes: the tenth has the continuation bit.
        let too_long = [0x80; 11];
        assert_eq!(read_varint(&too_long), Err(WireError::VarintOverflow));
        // ...even before the eleventh byte arrives.
        assert_eq!(read_varint(&[0x80; 10]), Err(WireError::VarintOverflow));
        // A redundant but short encoding is accepted (drpc accepts it).
        assert_eq!(read_varint(&[0x81, 0x00]).unwrap(), Some((1, 2)));
    }

    #[test]
    fn a_varint_overflow_in_a_header_is_an_error() {
        let mut bytes = vec![0x05];
        bytes.extend_from_slice(&[0xff; 9]);
        bytes.push(0x7f);
        assert_eq!(decode_all(&bytes), Err(WireError::VarintOverflow));
    }

    #[test]
    fn byte_by_byte_input_gives_the_same_packets() {
        let bytes = client_unary_bytes();
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for b in &bytes {
            d.extend(&[*b]);
            while let Some(p) = d.decode().unwrap() {
                out.push(p);
            }
        }
        assert_eq!(out, decode_all(&bytes).unwrap());
        assert!(d.at_boundary());
        d.extend(&[0x05, 0x01]);
        assert_eq!(d.decode().unwrap(), None);
        assert!(!d.at_boundary(), "half a frame");
    }

    #[test]
    fn a_packet_split_over_frames_is_reassembled() {
        // Three frames of one Message, the last with done.
        let mut bytes = Vec::new();
        write_frame(
            &mut bytes,
            Id::new(1, 2),
            Kind::Message,
            false,
            false,
            b"ab",
        );
        write_frame(&mut bytes, Id::new(1, 2), Kind::Message, false, false, b"");
        write_frame(&mut bytes, Id::new(1, 2), Kind::Message, true, false, b"cd");
        let mut d = Decoder::new();
        d.extend(&bytes[..bytes.len() - 1]);
        assert_eq!(d.decode().unwrap(), None);
        assert_eq!(
            d.buffered(),
            2 + 4 + 1,
            "assembled data plus the last frame's start"
        );
        d.extend(&bytes[bytes.len() - 1..]);
        assert_eq!(
            d.decode().unwrap(),
            Some(packet(1, 2, Kind::Message, false, b"abcd"))
        );
        assert!(d.at_boundary());
    }

    #[test]
    fn the_writer_splits_at_64_kib_and_the_decoder_joins() {
        for len in [
            0,
            1,
            FRAME_SPLIT - 1,
            FRAME_SPLIT,
            FRAME_SPLIT + 1,
            3 * FRAME_SPLIT + 7,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            write_packet(&mut out, Id::new(3, 9), Kind::Message, false, &data);
            // Count the frames.
            let mut frames = 0;
            let mut rest = out.as_slice();
            while let Some((h, n)) = parse_frame_header(rest).unwrap() {
                frames += 1;
                assert!(h.len as usize <= FRAME_SPLIT);
                assert_eq!(h.done, rest.len() == n + h.len as usize);
                rest = &rest[n + h.len as usize..];
            }
            assert_eq!(frames, len.div_ceil(FRAME_SPLIT).max(1), "{len}");
            let packets = decode_all(&out).unwrap();
            assert_eq!(packets, vec![packet(3, 9, Kind::Message, false, &data)]);
        }
    }

    #[test]
    fn the_control_bit_on_any_frame_makes_a_control_packet() {
        let mut bytes = Vec::new();
        write_frame(
            &mut bytes,
            Id::new(1, 1),
            Kind::Unknown(9),
            false,
            false,
            b"x",
        );
        write_frame(
            &mut bytes,
            Id::new(1, 1),
            Kind::Unknown(9),
            true,
            true,
            b"y",
        );
        let packets = decode_all(&bytes).unwrap();
        assert_eq!(packets, vec![packet(1, 1, Kind::Unknown(9), true, b"xy")]);
        assert_eq!(packets[0].body().unwrap(), Body::Ignored);
    }

    #[test]
    fn an_unknown_kind_without_the_control_bit_is_an_error() {
        let mut bytes = Vec::new();
        write_packet(&mut bytes, Id::new(1, 1), Kind::Unknown(0), false, b"");
        write_packet(&mut bytes, Id::new(1, 2), Kind::Unknown(8), false, b"z");
        let packets = decode_all(&bytes).unwrap();
        assert_eq!(packets[0].body(), Err(WireError::UnknownKind(0)));
        assert_eq!(packets[1].body(), Err(WireError::UnknownKind(8)));
    }

    #[test]
    fn the_kind_may_not_change_inside_a_packet() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, Id::new(1, 1), Kind::Message, false, false, b"a");
        write_frame(&mut bytes, Id::new(1, 1), Kind::Error, true, false, b"b");
        assert_eq!(
            decode_all(&bytes),
            Err(WireError::KindChange {
                id: Id::new(1, 1),
                from: Kind::Message,
                to: Kind::Error
            })
        );
    }

    #[test]
    fn ids_may_not_go_backwards() {
        // A lower message id on the same stream.
        let mut bytes = Vec::new();
        write_packet(&mut bytes, Id::new(1, 2), Kind::Message, false, b"");
        write_packet(&mut bytes, Id::new(1, 1), Kind::Message, false, b"");
        assert_eq!(
            decode_all(&bytes),
            Err(WireError::IdRegression {
                got: Id::new(1, 1),
                last: Id::new(1, 2)
            })
        );
        // A lower stream id, whatever the message id.
        let mut bytes = Vec::new();
        write_packet(&mut bytes, Id::new(2, 1), Kind::Message, false, b"");
        write_packet(&mut bytes, Id::new(1, 9), Kind::Message, false, b"");
        assert!(matches!(
            decode_all(&bytes),
            Err(WireError::IdRegression { .. })
        ));
        // The id of a packet already complete.
        let mut bytes = Vec::new();
        write_packet(&mut bytes, Id::new(1, 1), Kind::Message, false, b"");
        write_packet(&mut bytes, Id::new(1, 1), Kind::Message, false, b"");
        assert!(matches!(
            decode_all(&bytes),
            Err(WireError::IdRegression { .. })
        ));
        // Ids start at <1, 1>: stream 0 and message 0 are never valid.
        for id in [Id::new(0, 5), Id::new(1, 0)] {
            let mut bytes = Vec::new();
            write_packet(&mut bytes, id, Kind::Message, false, b"");
            assert!(matches!(
                decode_all(&bytes),
                Err(WireError::IdRegression { .. })
            ));
        }
        // Gaps are fine, and a new stream may restart message ids.
        let mut bytes = Vec::new();
        write_packet(&mut bytes, Id::new(1, 1), Kind::Message, false, b"");
        write_packet(&mut bytes, Id::new(1, 7), Kind::Message, false, b"");
        write_packet(&mut bytes, Id::new(4, 1), Kind::Message, false, b"");
        assert_eq!(decode_all(&bytes).unwrap().len(), 3);
    }

    #[test]
    fn a_new_id_drops_the_half_assembled_packet() {
        // drpc discards a packet whose frames stop before done when a frame
        // with a higher id arrives.
        let mut bytes = Vec::new();
        write_frame(
            &mut bytes,
            Id::new(1, 1),
            Kind::Message,
            false,
            false,
            b"lost",
        );
        write_frame(&mut bytes, Id::new(1, 2), Kind::CloseSend, true, false, b"");
        assert_eq!(
            decode_all(&bytes).unwrap(),
            vec![packet(1, 2, Kind::CloseSend, false, b"")]
        );
    }

    #[test]
    fn the_cap_is_checked_on_the_header_before_any_data() {
        // A single frame claiming one byte more than the cap: refused from
        // the header alone.
        let mut header = Vec::new();
        header.push(0x05);
        write_varint(&mut header, 1);
        write_varint(&mut header, 1);
        write_varint(&mut header, MAX_PACKET_SIZE as u64 + 1);
        let mut d = Decoder::new();
        d.extend(&header);
        assert_eq!(d.decode(), Err(WireError::TooLarge));

        // A length near u64::MAX, which must not wrap anything.
        let mut header = vec![0x05, 0x01, 0x01];
        write_varint(&mut header, u64::MAX);
        let mut d = Decoder::new();
        d.extend(&header);
        assert_eq!(d.decode(), Err(WireError::TooLarge));

        // Exactly the cap is fine; it is waited for, not allocated up front.
        let mut header = vec![0x05, 0x01, 0x01];
        write_varint(&mut header, MAX_PACKET_SIZE as u64);
        let mut d = Decoder::new();
        d.extend(&header);
        assert_eq!(d.decode(), Ok(None));
        assert!(d.buf.capacity() < 1024, "nothing reserved for the claim");
    }

    #[test]
    fn the_cap_counts_the_frames_already_assembled() {
        let half = vec![7u8; MAX_PACKET_SIZE / 2];
        let mut bytes = Vec::new();
        write_frame(
            &mut bytes,
            Id::new(1, 1),
            Kind::Message,
            false,
            false,
            &half,
        );
        write_frame(
            &mut bytes,
            Id::new(1, 1),
            Kind::Message,
            false,
            false,
            &half,
        );
        let mut d = Decoder::new();
        d.extend(&bytes);
        assert_eq!(d.decode(), Ok(None));
        assert_eq!(d.buffered(), MAX_PACKET_SIZE);
        // One more byte in a third frame: refused on its header.
        d.extend(&[0x05, 0x01, 0x01, 0x01]);
        assert_eq!(d.decode(), Err(WireError::TooLarge));

        // Exactly the cap over two frames is one packet.
        let mut bytes = Vec::new();
        write_frame(
            &mut bytes,
            Id::new(1, 1),
            Kind::Message,
            false,
            false,
            &half,
        );
        write_frame(&mut bytes, Id::new(1, 1), Kind::Message, true, false, &half);
        let packets = decode_all(&bytes).unwrap();
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].data.len(), MAX_PACKET_SIZE);
    }

    #[test]
    fn error_bodies() {
        let e = RpcError::unimplemented("unknown rpc");
        assert_eq!(e.code, UNIMPLEMENTED);
        let body = e.encode();
        assert_eq!(&body[..8], &[0, 0, 0, 0, 0, 0, 0, 12]);
        assert_eq!(&body[8..], b"unknown rpc");
        assert_eq!(RpcError::decode(&body), e);
        assert_eq!(e.to_string(), "unknown rpc (drpc code 12)");
        // Short bodies are a message without a code, as drpc reads them.
        assert_eq!(RpcError::decode(b"oops"), RpcError::message("oops"));
        assert_eq!(RpcError::decode(b""), RpcError::new(0, ""));
        // Invalid UTF-8 is replaced, never refused.
        assert_eq!(
            RpcError::decode(b"\0\0\0\0\0\0\0\x01\xff").message,
            "\u{fffd}"
        );
        let mut bytes = Vec::new();
        write_packet(
            &mut bytes,
            Id::new(1, 1),
            Kind::Error,
            false,
            &RpcError::new(7, "no").encode(),
        );
        let p = decode_all(&bytes).unwrap();
        assert_eq!(p[0].body().unwrap(), Body::Error(RpcError::new(7, "no")));
    }

    #[test]
    fn bodies_of_the_other_kinds() {
        let mut bytes = Vec::new();
        write_packet(&mut bytes, Id::new(1, 1), Kind::InvokeMetadata, false, b"");
        write_packet(&mut bytes, Id::new(1, 2), Kind::Invoke, false, b"/a/\xffB");
        write_packet(&mut bytes, Id::new(1, 3), Kind::Cancel, true, b"");
        write_packet(&mut bytes, Id::new(1, 4), Kind::Close, false, b"");
        let bodies: Vec<Body> = decode_all(&bytes)
            .unwrap()
            .iter()
            .map(|p| p.body().unwrap())
            .collect();
        assert_eq!(
            bodies,
            vec![
                Body::InvokeMetadata(Metadata::new()),
                Body::Invoke("/a/\u{fffd}B".to_string()),
                Body::Cancel,
                Body::Close,
            ]
        );
        // Malformed metadata is an error.
        let mut bytes = Vec::new();
        write_packet(
            &mut bytes,
            Id::new(1, 1),
            Kind::InvokeMetadata,
            false,
            b"\x0a\x05",
        );
        let p = decode_all(&bytes).unwrap();
        assert!(matches!(p[0].body(), Err(WireError::Metadata(_))));
    }

    #[test]
    fn ids_display_and_order() {
        assert_eq!(Id::new(1, 2).to_string(), "<s:1 m:2>");
        assert!(Id::new(1, 9) < Id::new(2, 1));
        assert!(Id::new(2, 1) < Id::new(2, 2));
        assert_eq!(Id::default(), Id::new(0, 0));
        assert!(Decoder::default().at_boundary());
    }

    /// A small deterministic generator (xorshift), so the test needs no
    /// crate and fails the same way every time.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Runs the decoder (and every body decoder) over `input`, fed in chunks
    /// of `chunk` bytes, checking the memory bound after every call. Returns
    /// how many packets came out before the end or an error.
    fn drive(input: &[u8], chunk: usize) -> usize {
        let mut d = Decoder::new();
        let mut packets = 0;
        for piece in input.chunks(chunk.max(1)) {
            d.extend(piece);
            loop {
                match d.decode() {
                    Ok(Some(p)) => {
                        assert!(p.data.len() <= MAX_PACKET_SIZE);
                        let _ = p.body();
                        packets += 1;
                    }
                    Ok(None) => break,
                    Err(_) => return packets,
                }
            }
            assert!(d.buffered() <= MAX_PACKET_SIZE + MAX_FRAME_HEADER);
        }
        packets
    }

    /// Stands in for the fuzz target (`fuzz/fuzz_targets/drpc_frames.rs`)
    /// where cargo-fuzz is not available: random bytes, and random mutations
    /// of valid streams, never panic and never buffer beyond the cap.
    #[test]
    fn random_and_mutated_input_never_panics_or_overbuffers() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // A Go client's unary call with metadata: message ids 1 to 4.
        let mut md = Metadata::new();
        md.insert("k".into(), "v".into());
        let mut valid = Vec::new();
        write_packet(
            &mut valid,
            Id::new(1, 1),
            Kind::InvokeMetadata,
            false,
            &metadata::encode(&md),
        );
        write_packet(
            &mut valid,
            Id::new(1, 2),
            Kind::Invoke,
            false,
            GET_MANIFEST.as_bytes(),
        );
        write_packet(&mut valid, Id::new(1, 3), Kind::Message, false, b"");
        write_packet(&mut valid, Id::new(1, 4), Kind::CloseSend, false, b"");
        assert_eq!(drive(&valid, 1), 4);
        let mut valid2 = Vec::new();
        write_packet(
            &mut valid2,
            Id::new(2, 1),
            Kind::Invoke,
            false,
            GET_MANIFEST.as_bytes(),
        );
        write_packet(
            &mut valid2,
            Id::new(2, 2),
            Kind::Message,
            false,
            &[1u8; 70_000],
        );
        write_packet(
            &mut valid2,
            Id::new(2, 3),
            Kind::Error,
            false,
            &RpcError::new(3, "x").encode(),
        );
        write_packet(&mut valid2, Id::new(2, 4), Kind::Cancel, true, b"");
        assert_eq!(drive(&valid2, 4096), 4);

        let mut total = 0;
        for round in 0..4000 {
            let input: Vec<u8> = if round % 2 == 0 {
                let len = rng.below(256);
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                let mut v = if round % 4 == 1 {
                    valid.clone()
                } else {
                    valid2.clone()
                };
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(v.len());
                    match rng.below(3) {
                        0 => v[at] = rng.next() as u8,
                        1 => {
                            v.remove(at);
                        }
                        _ => v.insert(at, rng.next() as u8),
                    }
                }
                v
            };
            total += drive(&input, 1 + rng.below(64));
        }
        assert!(total > 0, "some inputs still decode");
    }
}
