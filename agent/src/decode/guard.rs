//! Decoding untrusted bytes with kafka-protocol without letting a forged
//! element count abort the process.
//!
//! kafka-protocol 0.18 sizes a `Vec` from an array's declared length before
//! decoding any element, so a few hostile bytes can request hundreds of
//! gigabytes, and a failed allocation aborts (it is not a panic). Every array
//! element takes at least one byte on the wire, so a count larger than the
//! bytes left is always invalid. This buffer enforces that:
//! - varints (in messages, always lengths, counts or tags) larger than the
//!   bytes left are refused outright;
//! - an `int32` may be an array length or a plain value (a timeout), so large
//!   ones are clamped just past the end of the buffer, which makes any array
//!   length among them fail without allocating. When decoding succeeds, every
//!   clamped value was a plain value: the result is exact except that plain
//!   `int32` fields above the bytes left read as that bound. The sniffer reads
//!   names, ids, error codes and lengths only, never such a value, so it takes
//!   the one pass as is rather than decoding every Produce (whose timeout is
//!   larger than its body) twice.

use std::ops::Range;

use bytes::{Buf, Bytes, TryGetError};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::protocol::buf::ByteBuf;

/// Slack for tag numbers, which are small but not lengths.
const VARINT_SLACK: usize = 64;

/// A `Bytes` reader that refuses impossible lengths (see the module docs).
pub(crate) struct GuardedBuf {
    inner: Bytes,
}

impl GuardedBuf {
    fn new(inner: Bytes) -> Self {
        Self { inner }
    }

    /// The bytes not read yet.
    pub(crate) fn into_rest(self) -> Bytes {
        self.inner
    }
}

impl Buf for GuardedBuf {
    fn remaining(&self) -> usize {
        self.inner.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.inner.chunk()
    }

    fn advance(&mut self, cnt: usize) {
        let cnt = cnt.min(self.inner.remaining());
        self.inner.advance(cnt);
    }

    fn try_get_i32(&mut self) -> Result<i32, TryGetError> {
        let value = self.inner.try_get_i32()?;
        let limit = self.inner.remaining().saturating_add(1);
        match usize::try_from(value) {
            Ok(n) if n > limit => Ok(i32::try_from(limit).unwrap_or(i32::MAX)),
            _ => Ok(value),
        }
    }

    fn try_get_u8(&mut self) -> Result<u8, TryGetError> {
        let (value, len) = peek_varint(self.inner.chunk());
        let after = self.inner.remaining().saturating_sub(len);
        if value > after.saturating_add(1 + VARINT_SLACK) {
            return Err(TryGetError {
                requested: value,
                available: after,
            });
        }
        self.inner.try_get_u8()
    }
}

impl ByteBuf for GuardedBuf {
    fn peek_bytes(&mut self, r: Range<usize>) -> Bytes {
        match self.inner.get(r) {
            Some(slice) => Bytes::copy_from_slice(slice),
            None => Bytes::new(),
        }
    }

    fn get_bytes(&mut self, size: usize) -> Bytes {
        self.inner.split_to(size.min(self.inner.len()))
    }
}

/// The unsigned varint at the start of `bytes` and its length; a truncated
/// one counts what is there (the decoder then fails on its own).
fn peek_varint(bytes: &[u8]) -> (usize, usize) {
    let mut value: u64 = 0;
    let mut len = 0;
    for (i, byte) in bytes.iter().take(5).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        len = i + 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    (usize::try_from(value).unwrap_or(usize::MAX), len)
}

/// Decodes a `T` from the start of `bytes` (see the module docs: plain `int32`
/// values above the bytes left come back clamped), returning it and the bytes
/// after it.
pub(crate) fn decode_guarded<T: Decodable>(
    bytes: &Bytes,
    version: i16,
) -> anyhow::Result<(T, Bytes)> {
    let mut buf = GuardedBuf::new(bytes.clone());
    let value = T::decode(&mut buf, version)?;
    Ok((value, buf.into_rest()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::produce_request::TopicProduceData;
    use kafka_protocol::messages::{MetadataRequest, ProduceRequest, TopicName};
    use kafka_protocol::protocol::Encodable;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn huge_array_lengths_fail_without_allocating() {
        // Metadata v0: topics array of i32::MAX elements, 1 byte of body.
        let body = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0x00]);
        assert!(decode_guarded::<MetadataRequest>(&body, 0).is_err());
        // Metadata v12 (flexible): compact array of u32::MAX - 1 elements.
        let body = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        assert!(decode_guarded::<MetadataRequest>(&body, 12).is_err());
    }

    #[test]
    fn large_plain_int32_values_decode_clamped() {
        let topic =
            TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str("t")));
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(i32::MAX)
            .with_topic_data(vec![topic]);
        let mut buf = BytesMut::new();
        request.encode(&mut buf, 9).expect("encode");
        let body = buf.freeze();
        let (decoded, rest) = decode_guarded::<ProduceRequest>(&body, 9).expect("decode");
        assert_eq!(decoded.acks, -1);
        assert_eq!(decoded.topic_data, request.topic_data);
        let bytes_left_after_timeout = body.len() - 1 - 2 - 4;
        assert_eq!(decoded.timeout_ms as usize, bytes_left_after_timeout + 1);
        assert!(rest.is_empty());
    }
}
