//! The body of an InvokeMetadata packet: a protobuf message whose field 1 is
//! a repeated entry `{key = 1, value = 2}`, the encoding of a
//! `map<string, string>` (storj/drpc:drpcmetadata/serialize.go). drpc
//! releases before the hand-written encoder used `map<string, string> data
//! = 2` beside a `uint32 version = 1`; both layouts are read. Pure.
//!
//! Decoding follows protobuf's rules: fields in any order, unknown fields
//! skipped, a later value for a key replaces an earlier one, missing key or
//! value is empty. Keys and values that are not UTF-8 are replaced, never
//! refused (Go's strings hold any bytes). Only a structurally broken message
//! (a truncated field, a varint over 64 bits, a group or a reserved wire
//! type) is an error.

use std::collections::BTreeMap;

use super::wire::{WireError, read_varint, write_varint};

/// Metadata sent with an Invoke, key to value.
pub type Metadata = BTreeMap<String, String>;

/// One protobuf field: its number and, for length-delimited fields, the
/// bytes (other wire types are skipped and carry no bytes here).
struct Field<'a> {
    number: u64,
    bytes: Option<&'a [u8]>,
}

/// Reads the field at the start of `buf`; returns it and the bytes after it.
fn next_field(buf: &[u8]) -> Result<(Field<'_>, &[u8]), WireError> {
    let (tag, n) = read_varint(buf)?.ok_or(WireError::Metadata("truncated tag"))?;
    let rest = &buf[n..];
    let number = tag >> 3;
    if number == 0 {
        return Err(WireError::Metadata("field number 0"));
    }
    let (bytes, rest) = match tag & 7 {
        0 => {
            let (_, n) = read_varint(rest)?.ok_or(WireError::Metadata("truncated varint"))?;
            (None, &rest[n..])
        }
        1 => (None, skip(rest, 8)?),
        2 => {
            let (len, n) = read_varint(rest)?.ok_or(WireError::Metadata("truncated length"))?;
            let rest = &rest[n..];
            let len = usize::try_from(len)
                .ok()
                .filter(|&len| len <= rest.len())
                .ok_or(WireError::Metadata("length beyond the body"))?;
            let (bytes, rest) = rest.split_at(len);
            (Some(bytes), rest)
        }
        5 => (None, skip(rest, 4)?),
        _ => return Err(WireError::Metadata("unsupported wire type")),
    };
    Ok((Field { number, bytes }, rest))
}

fn skip(buf: &[u8], n: usize) -> Result<&[u8], WireError> {
    buf.get(n..)
        .ok_or(WireError::Metadata("truncated fixed-width field"))
}

/// Reads one map entry `{key = 1, value = 2}`.
fn entry(mut buf: &[u8]) -> Result<(String, String), WireError> {
    let (mut key, mut value) = (String::new(), String::new());
    while !buf.is_empty() {
        let (field, rest) = next_field(buf)?;
        match (field.number, field.bytes) {
            (1, Some(b)) => key = String::from_utf8_lossy(b).into_owned(),
            (2, Some(b)) => value = String::from_utf8_lossy(b).into_owned(),
            _ => {}
        }
        buf = rest;
    }
    Ok((key, value))
}

/// Decodes an InvokeMetadata body.
pub fn decode(mut buf: &[u8]) -> Result<Metadata, WireError> {
    let mut out = Metadata::new();
    while !buf.is_empty() {
        let (field, rest) = next_field(buf)?;
        // Field 1: today's layout; field 2: the older `data = 2`. A varint
        // field 1 is the older `version`, skipped like any unknown field.
        if let (1 | 2, Some(b)) = (field.number, field.bytes) {
            let (key, value) = entry(b)?;
            out.insert(key, value);
        }
        buf = rest;
    }
    Ok(out)
}

/// Encodes metadata as drpc does (field 1 entries, key then value).
pub fn encode(metadata: &Metadata) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in metadata {
        let mut entry = Vec::with_capacity(key.len() + value.len() + 12);
        for (tag, text) in [(0x0a, key), (0x12, value)] {
            entry.push(tag);
            write_varint(&mut entry, text.len() as u64);
            entry.extend_from_slice(text.as_bytes());
        }
        out.push(0x0a);
        write_varint(&mut out, entry.len() as u64);
        out.extend_from_slice(&entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn drpc_compatibility_vectors() {
        // storj/drpc:drpcmetadata/serialize_test.go, TestCompatibility_Append.
        let one = [
            0x0a, 0x0c, 0x0a, 0x03, 0x6b, 0x65, 0x79, 0x12, 0x05, 0x76, 0x61, 0x6c, 0x75, 0x65,
        ];
        assert_eq!(encode(&md(&[("key", "value")])), one);
        assert_eq!(decode(&one).unwrap(), md(&[("key", "value")]));
        // TestCompatibility_Parse: five entries, not in key order.
        let mut five = Vec::new();
        for i in ["5", "1", "2", "3", "4"] {
            five.extend_from_slice(&[0x0a, 0x0e, 0x0a, 0x04]);
            five.extend_from_slice(format!("key{i}").as_bytes());
            five.extend_from_slice(&[0x12, 0x06]);
            five.extend_from_slice(format!("value{i}").as_bytes());
        }
        let got = decode(&five).unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got["key5"], "value5");
        assert_eq!(decode(&encode(&got)).unwrap(), got);
    }

    #[test]
    fn the_older_layout_and_protobuf_leniency() {
        // uint32 version = 1 (varint), then data = 2 entries; a fixed64 and a
        // fixed32 unknown field; an entry with the value before the key and
        // an unknown field inside; an entry with no value; a repeated key.
        let mut buf = vec![0x08, 0x01];
        buf.extend_from_slice(&[0x12, 0x06, 0x12, 0x01, b'v', 0x0a, 0x01, b'k']);
        buf.extend_from_slice(&[0x19, 1, 2, 3, 4, 5, 6, 7, 8]);
        buf.extend_from_slice(&[0x25, 1, 2, 3, 4]);
        buf.extend_from_slice(&[0x0a, 0x05, 0x18, 0x07, 0x0a, 0x01, b'e']);
        buf.extend_from_slice(&[0x0a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'w']);
        buf.extend_from_slice(&[0x0a, 0x03, 0x0a, 0x01, 0xff]);
        assert_eq!(
            decode(&buf).unwrap(),
            md(&[("k", "w"), ("e", ""), ("\u{fffd}", "")])
        );
        assert_eq!(decode(&[]).unwrap(), Metadata::new());
        assert_eq!(encode(&Metadata::new()), Vec::<u8>::new());
    }

    #[test]
    fn broken_messages_are_errors() {
        for bad in [
            &[0x0a][..],               // tag without a length
            &[0x0a, 0x05, 0x0a],       // length beyond the body
            &[0x0a, 0xff],             // truncated length varint
            &[0x08],                   // varint field without its value
            &[0x08, 0x80],             // truncated varint value
            &[0x19, 1, 2],             // short fixed64
            &[0x25, 1],                // short fixed32
            &[0x0b],                   // start group
            &[0x0e],                   // wire type 6
            &[0x02, 0x00],             // field number 0
            &[0x80],                   // truncated tag
            &[0x0a, 0x02, 0x0a, 0x05], // broken entry
            &[
                0x0a, 0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ], // tag over 64 bits
        ] {
            assert!(decode(bad).is_err(), "{bad:02x?}");
        }
        assert_eq!(
            decode(&[0x0e]),
            Err(WireError::Metadata("unsupported wire type"))
        );
        // A tag varint longer than 64 bits is the varint's own error.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(WireError::VarintOverflow)
        );
    }
}
