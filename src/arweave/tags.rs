//! ANS-104 tags: an Avro `array<record{name: bytes, value: bytes}>` (spec/arweave-turbo.md §1.2).
//!
//! Lengths and counts are zig-zag varints. We write one block and the terminating `0x00`, and
//! write nothing at all for zero tags (arbundles' canonical form). The decoder also accepts
//! several blocks, negative block counts (followed by a block byte size) and the Python SDK's
//! single `0x00` for an empty list, and reports how many bytes it consumed.

/// One data-item tag. Names and values are bytes on the wire; UTF-8 in practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Tag name.
    pub name: Vec<u8>,
    /// Tag value.
    pub value: Vec<u8>,
}

impl Tag {
    /// A tag from UTF-8 strings.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Tag {
            name: name.into().into_bytes(),
            value: value.into().into_bytes(),
        }
    }

    /// The name as text (lossy for non-UTF-8 bytes).
    pub fn name_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    /// The value as text (lossy for non-UTF-8 bytes).
    pub fn value_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }
}

/// Why tag bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagDecodeError {
    /// The bytes end inside a value.
    #[error("tag bytes end unexpectedly at offset {0}")]
    Truncated(usize),
    /// A varint longer than 64 bits, or a negative length.
    #[error("malformed Avro length at offset {0}")]
    BadLength(usize),
}

/// Avro encoding of `tags` (empty for no tags).
pub fn encode(tags: &[Tag]) -> Vec<u8> {
    if tags.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    write_long(&mut out, tags.len() as i64);
    for tag in tags {
        write_long(&mut out, tag.name.len() as i64);
        out.extend_from_slice(&tag.name);
        write_long(&mut out, tag.value.len() as i64);
        out.extend_from_slice(&tag.value);
    }
    out.push(0);
    out
}

/// Decodes Avro tag bytes; returns the tags and the number of bytes consumed.
pub fn decode(bytes: &[u8]) -> Result<(Vec<Tag>, usize), TagDecodeError> {
    let mut tags = Vec::new();
    if bytes.is_empty() {
        return Ok((tags, 0));
    }
    let mut pos = 0usize;
    loop {
        let count = read_long(bytes, &mut pos)?;
        if count == 0 {
            return Ok((tags, pos));
        }
        let count = if count < 0 {
            // A negative count is followed by the block's byte size, which we do not need.
            read_long(bytes, &mut pos)?;
            count.unsigned_abs()
        } else {
            count as u64
        };
        for _ in 0..count {
            let name = read_bytes(bytes, &mut pos)?;
            let value = read_bytes(bytes, &mut pos)?;
            tags.push(Tag { name, value });
        }
    }
}

fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

fn read_long(bytes: &[u8], pos: &mut usize) -> Result<i64, TagDecodeError> {
    let start = *pos;
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos).ok_or(TagDecodeError::Truncated(*pos))?;
        *pos += 1;
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(TagDecodeError::BadLength(start))
}

fn read_bytes(bytes: &[u8], pos: &mut usize) -> Result<Vec<u8>, TagDecodeError> {
    let at = *pos;
    let len = read_long(bytes, pos)?;
    let len = usize::try_from(len).map_err(|_| TagDecodeError::BadLength(at))?;
    let end = pos
        .checked_add(len)
        .filter(|e| *e <= bytes.len())
        .ok_or(TagDecodeError::Truncated(*pos))?;
    let out = bytes[*pos..end].to_vec();
    *pos = end;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_zigzag_varints() {
        let mut out = Vec::new();
        for n in [12i64, 200, 2] {
            write_long(&mut out, n);
        }
        assert_eq!(out, [0x18, 0x90, 0x03, 0x04]);
        let mut pos = 0;
        assert_eq!(read_long(&[0x01], &mut pos), Ok(-1));
    }

    #[test]
    fn round_trips_and_reports_consumed_bytes() {
        let tags = vec![
            Tag::new("Content-Type", "application/json"),
            Tag::new("Ünï", "值🚀".repeat(40)),
        ];
        let bytes = encode(&tags);
        assert_eq!(decode(&bytes), Ok((tags, bytes.len())));
        assert!(encode(&[]).is_empty());
        assert_eq!(decode(&[0]), Ok((vec![], 1)), "the Python SDK's empty list");
    }

    #[test]
    fn multiple_and_negative_blocks_decode() {
        // Block of 1 (count 1 → 0x02), then a negative block of 1 (count -1 → 0x01, size 6 → 0x0c).
        let bytes = [
            0x02, 0x02, b'a', 0x02, b'b', 0x01, 0x0c, 0x02, b'c', 0x02, b'd', 0x00,
        ];
        let (tags, used) = decode(&bytes).unwrap();
        assert_eq!(tags, vec![Tag::new("a", "b"), Tag::new("c", "d")]);
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn truncated_or_overlong_input_is_an_error() {
        let bytes = encode(&[Tag::new("name", "value")]);
        for cut in 1..bytes.len() - 1 {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&[0xff; 11]).is_err());
        assert!(decode(&[0x02, 0x01]).is_err(), "negative length");
    }
}
