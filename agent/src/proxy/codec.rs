//! Whole Kafka messages as the proxy reads and writes them: it re-encodes what it decodes, so a
//! decoded value must be exact, and it must never let a hostile length allocate.
//!
//! The sniffer's guarded decoder refuses impossible lengths but clamps large plain `int32`
//! values (see `decode::guard`), which is right for reading names and codes and wrong for a
//! message the proxy sends on. So [`decode_exact`] decodes twice: the guarded pass proves every
//! length fits the bytes, then a plain pass, which then reads the very same lengths, gives the
//! exact values. The second pass only runs for requests and responses a fault acts on.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::ProxyError;
use crate::decode::guard::decode_guarded;

/// Decodes a `T` at `version` from the start of `bytes`, exactly, returning it and the bytes
/// after it. Lengths larger than the bytes left fail without allocating.
pub(crate) fn decode_exact<T: Decodable>(
    bytes: &Bytes,
    version: i16,
) -> Result<(T, Bytes), ProxyError> {
    decode_guarded::<T>(bytes, version).map_err(|e| ProxyError::Decode(e.to_string()))?;
    let mut rest = bytes.clone();
    let value = T::decode(&mut rest, version).map_err(|e| ProxyError::Decode(e.to_string()))?;
    Ok((value, rest))
}

/// A request frame (without its size prefix) cut into header and body.
#[derive(Debug, Clone)]
pub(crate) struct RequestFrame {
    /// The api.
    pub(crate) key: ApiKey,
    /// Its version.
    pub(crate) version: i16,
    /// The correlation id the answer must carry.
    pub(crate) correlation_id: i32,
    /// The header as on the wire, kept verbatim when the body is rewritten.
    pub(crate) header: Bytes,
    /// The body.
    pub(crate) body: Bytes,
}

impl RequestFrame {
    /// Cuts `frame` (without its size prefix); fails on an unknown api or version, or a header
    /// that does not decode.
    pub(crate) fn parse(frame: &Bytes) -> Result<Self, ProxyError> {
        let fixed = frame
            .get(..4)
            .ok_or(ProxyError::Decode("frame too short for a header".into()))?;
        let api = i16::from_be_bytes([fixed[0], fixed[1]]);
        let version = i16::from_be_bytes([fixed[2], fixed[3]]);
        let key = ApiKey::try_from(api).map_err(|()| ProxyError::UnknownApi(api))?;
        let range = key.valid_versions();
        if !(range.min..=range.max).contains(&version) {
            return Err(ProxyError::Decode(format!(
                "version {version} of {key:?} is not supported"
            )));
        }
        let (header, body) =
            decode_exact::<RequestHeader>(frame, key.request_header_version(version))?;
        Ok(Self {
            key,
            version,
            correlation_id: header.correlation_id,
            header: frame.slice(..frame.len() - body.len()),
            body,
        })
    }

    /// The size-prefixed frame with the same header and a new body.
    pub(crate) fn with_body(&self, body: &impl Encodable) -> Result<Vec<u8>, ProxyError> {
        let mut buf = BytesMut::with_capacity(self.header.len() + self.body.len() + 64);
        buf.put_i32(0);
        buf.put_slice(&self.header);
        body.encode(&mut buf, self.version)
            .map_err(|e| ProxyError::Encode(e.to_string()))?;
        finish_frame(buf)
    }
}

/// A response frame (without its size prefix) cut into header and body.
#[derive(Debug, Clone)]
pub(crate) struct ResponseFrame {
    /// The header as on the wire.
    pub(crate) header: Bytes,
    /// The body.
    pub(crate) body: Bytes,
}

impl ResponseFrame {
    /// Cuts `frame`, the response to a request of `key` at `version`.
    pub(crate) fn parse(frame: &Bytes, key: ApiKey, version: i16) -> Result<Self, ProxyError> {
        let (_, body) =
            decode_exact::<ResponseHeader>(frame, key.response_header_version(version))?;
        Ok(Self {
            header: frame.slice(..frame.len() - body.len()),
            body,
        })
    }

    /// The size-prefixed frame with the same header and `body` encoded at `version`, followed
    /// by `trailing` (bytes the decoder left, kept as they were).
    pub(crate) fn with_body(
        &self,
        body: &impl Encodable,
        version: i16,
        trailing: &[u8],
    ) -> Result<Vec<u8>, ProxyError> {
        let mut buf = BytesMut::with_capacity(self.header.len() + self.body.len() + 64);
        buf.put_i32(0);
        buf.put_slice(&self.header);
        body.encode(&mut buf, version)
            .map_err(|e| ProxyError::Encode(e.to_string()))?;
        buf.put_slice(trailing);
        finish_frame(buf)
    }
}

/// A size-prefixed response frame to the request `request`: the response header of the version
/// the api dictates, with the request's correlation id, then `body` at the request's version.
pub(crate) fn response_frame(
    request: &RequestFrame,
    body: &impl Encodable,
) -> Result<Vec<u8>, ProxyError> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(request.correlation_id)
        .encode(
            &mut buf,
            request.key.response_header_version(request.version),
        )
        .map_err(|e| ProxyError::Encode(e.to_string()))?;
    body.encode(&mut buf, request.version)
        .map_err(|e| ProxyError::Encode(e.to_string()))?;
    finish_frame(buf)
}

/// Writes the size of what follows the prefix into the prefix.
fn finish_frame(mut buf: BytesMut) -> Result<Vec<u8>, ProxyError> {
    let size =
        i32::try_from(buf.len() - 4).map_err(|_| ProxyError::Encode("frame over 2 GiB".into()))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.into())
}
