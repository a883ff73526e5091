//! Corrupting the values of the records in a Produce request's or a Fetch response's record
//! batches (action `Corrupt`), leaving everything else of the batch as it was.
//!
//! What changes: every byte of every non-empty record value is inverted (XOR 0xFF), so the
//! corruption is unmistakable (a serializer's magic byte, a JSON brace or a UTF-8 text all
//! break) and reversible when someone inspects the stored bytes. Keys, headers, offsets,
//! timestamps, producer ids and sequences are untouched, and so are control batches
//! (transaction markers), legacy message sets (magic 0 and 1, which Kafka 4 no longer takes),
//! null values, and a truncated batch at the end of a Fetch partition.
//!
//! The batch CRC (CRC32C over the bytes after it) is what makes corruption visible:
//! - `fix_crc: false` leaves the CRC the batch carried, so it no longer matches: the broker
//!   answers a Produce with CORRUPT_MESSAGE, and a consumer's CRC check fails on a Fetch;
//! - `fix_crc: true` recomputes it, so the corrupted values are stored or delivered as valid
//!   (a byzantine fault).
//!
//! Compressed batches are decompressed, their values inverted, and recompressed with the same
//! codec (the batch length changes with it), for both settings: then, with `fix_crc: false`
//! and CRC checks off, a consumer still sees inverted values, not a codec error.
//! Decompression is bounded (`max_decompressed` per batch, zstd windows at most 128 MiB):
//! a batch beyond it, or one that does not decode, is left as it was.

use std::io::Read;

use bytes::{BufMut, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

/// Offset of `batchLength`: the bytes after it, up to the end of the batch.
const LENGTH_AT: usize = 8;
/// Bytes before the batch that `batchLength` does not count (base offset and the length).
const LOG_OVERHEAD: usize = 12;
/// Offset of the magic byte.
const MAGIC_AT: usize = 16;
/// Offset of the CRC, which covers everything from the attributes on.
const CRC_AT: usize = 17;
/// Offset of the attributes.
const ATTRIBUTES_AT: usize = 21;
/// Offset of the first record.
const RECORDS_AT: usize = 61;
/// The attributes bit of a control batch.
const CONTROL: i16 = 0x20;
/// The largest zstd window accepted when decompressing (2^27 = 128 MiB, zstd's default).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// How to corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corruption {
    /// Recompute each corrupted batch's CRC, so that the corruption passes for valid data.
    pub(crate) fix_crc: bool,
    /// The most bytes one compressed batch may decompress to.
    pub(crate) max_decompressed: usize,
}

/// The record batches of one partition, corrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupted {
    /// The new batches.
    pub(crate) bytes: Vec<u8>,
    /// Record values inverted.
    pub(crate) records: u64,
}

/// Corrupts the record values in `batches` (a partition's `records` field); `None` when no
/// value changed (nothing to corrupt, or nothing that could be read).
pub(crate) fn corrupt_batches(batches: &[u8], corruption: Corruption) -> Option<Corrupted> {
    let mut out = Vec::with_capacity(batches.len());
    let mut records = 0;
    let mut rest = batches;
    while !rest.is_empty() {
        let Some(len) = batch_len(rest) else {
            // A truncated batch (a Fetch may end with one): the client discards it anyway.
            out.extend_from_slice(rest);
            break;
        };
        let (batch, after) = rest.split_at(len);
        match corrupt_batch(batch, corruption) {
            Some(changed) => {
                out.extend_from_slice(&changed.bytes);
                records += changed.records;
            }
            None => out.extend_from_slice(batch),
        }
        rest = after;
    }
    (records > 0).then_some(Corrupted {
        bytes: out,
        records,
    })
}

/// The length of the batch (or legacy message) at the start of `bytes`, when it is all there.
fn batch_len(bytes: &[u8]) -> Option<usize> {
    let length = i32::from_be_bytes(bytes.get(LENGTH_AT..LOG_OVERHEAD)?.try_into().ok()?);
    let len = LOG_OVERHEAD.checked_add(usize::try_from(length).ok()?)?;
    (len <= bytes.len()).then_some(len)
}

fn corrupt_batch(batch: &[u8], corruption: Corruption) -> Option<Corrupted> {
    if batch.len() < RECORDS_AT || batch[MAGIC_AT] != 2 {
        return None;
    }
    let attributes = i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
    if attributes & CONTROL != 0 {
        return None;
    }
    let mut out = batch[..RECORDS_AT].to_vec();
    let records = match attributes & 0x7 {
        0 => {
            out.extend_from_slice(&batch[RECORDS_AT..]);
            invert_values(&mut out[RECORDS_AT..])?
        }
        codec => {
            let mut plain = decompress(codec, &batch[RECORDS_AT..], corruption.max_decompressed)?;
            let records = invert_values(&mut plain)?;
            out.extend_from_slice(&compress(codec, &plain)?);
            let length = i32::try_from(out.len() - LOG_OVERHEAD).ok()?;
            out[LENGTH_AT..LOG_OVERHEAD].copy_from_slice(&length.to_be_bytes());
            records
        }
    };
    if records == 0 {
        return None;
    }
    if corruption.fix_crc {
        let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
        out[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
    }
    Some(Corrupted {
        bytes: out,
        records,
    })
}

/// Inverts the non-empty values of the v2 records in `records` (the uncompressed records of a
/// batch); returns how many, or `None` when a record does not parse (then nothing should be
/// kept of the attempt).
fn invert_values(records: &mut [u8]) -> Option<u64> {
    let mut inverted = 0;
    let mut at = 0;
    while at < records.len() {
        let length = usize::try_from(read_varint(records, &mut at)?).ok()?;
        let end = at.checked_add(length).filter(|&end| end <= records.len())?;
        let record = &mut records[at..end];
        // attributes, timestampDelta, offsetDelta, key, then the value.
        let mut field = 1;
        read_varint(record, &mut field)?;
        read_varint(record, &mut field)?;
        if let Ok(key_len) = usize::try_from(read_varint(record, &mut field)?) {
            field = field.checked_add(key_len)?;
        }
        if let Ok(value_len) = usize::try_from(read_varint(record, &mut field)?) {
            let value = record.get_mut(field..field.checked_add(value_len)?)?;
            value.iter_mut().for_each(|byte| *byte = !*byte);
            inverted += u64::from(value_len > 0);
        }
        at = end;
    }
    Some(inverted)
}

/// The zigzag varint (up to 64 bits) at `*at` in `bytes`, advancing `*at` past it.
fn read_varint(bytes: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

/// The records of a compressed batch, at most `max` bytes of them.
fn decompress(codec: i16, compressed: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).ok()?.saturating_add(1);
    match codec {
        1 => flate2::read::MultiGzDecoder::new(compressed)
            .take(limit)
            .read_to_end(&mut out)
            .ok()?,
        2 => return snappy_decompress(compressed, max),
        3 => lz4::Decoder::new(compressed)
            .ok()?
            .take(limit)
            .read_to_end(&mut out)
            .ok()?,
        4 => {
            let mut decoder = zstd::stream::read::Decoder::new(compressed).ok()?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).ok()?;
            decoder.take(limit).read_to_end(&mut out).ok()?
        }
        _ => return None,
    };
    (out.len() <= max).then_some(out)
}

/// Snappy as Kafka writes it (xerial framing: a magic header, then length-prefixed blocks),
/// or raw snappy, as the Java client also accepts; each block's declared size is checked
/// against what is left of `max` before anything is allocated.
fn snappy_decompress(compressed: &[u8], max: usize) -> Option<Vec<u8>> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const XERIAL_HEADER: usize = 16;
    let mut out = Vec::new();
    let block = |bytes: &[u8], out: &mut Vec<u8>| -> Option<()> {
        let len = snap::raw::decompress_len(bytes).ok()?;
        let start = out.len();
        if start.checked_add(len)? > max {
            return None;
        }
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(bytes, &mut out[start..])
            .ok()?;
        Some(())
    };
    if !compressed.starts_with(XERIAL_MAGIC) {
        block(compressed, &mut out)?;
        return Some(out);
    }
    let mut rest = compressed.get(XERIAL_HEADER..)?;
    while !rest.is_empty() {
        let len = usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
        let bytes = rest.get(4..4usize.checked_add(len)?)?;
        block(bytes, &mut out)?;
        rest = &rest[4 + len..];
    }
    Some(out)
}

/// `plain` compressed with `codec` as kafka-protocol writes it for Kafka.
fn compress(codec: i16, plain: &[u8]) -> Option<Vec<u8>> {
    let mut out = BytesMut::with_capacity(plain.len() / 2 + 64);
    let write = |buf: &mut BytesMut| -> anyhow::Result<()> {
        buf.put_slice(plain);
        Ok(())
    };
    match codec {
        1 => Gzip::compress(&mut out, write),
        2 => Snappy::compress(&mut out, write),
        3 => Lz4::compress(&mut out, write),
        4 => Zstd::compress(&mut out, write),
        _ => return None,
    }
    .ok()?;
    Some(out.into())
}

#[cfg(test)]
pub(crate) mod tests {
    use bytes::Bytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// A real v2 batch of `n` records whose values are `value-<i>` (the third one null).
    pub(crate) fn batch(n: usize, compression: Compression) -> Vec<u8> {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: (i != 2).then(|| Bytes::from(format!("value-{i}"))),
                headers: [(
                    kafka_protocol::protocol::StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"v")),
                )]
                .into_iter()
                .collect(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode batch");
        buf.to_vec()
    }

    /// Decodes batches, checking their CRCs (as brokers and consumers do).
    pub(crate) fn decode(batches: &[u8]) -> anyhow::Result<Vec<Record>> {
        let mut buf = Bytes::copy_from_slice(batches);
        let sets = RecordBatchDecoder::decode_all(&mut buf)?;
        Ok(sets.into_iter().flat_map(|set| set.records).collect())
    }

    fn inverted(value: &[u8]) -> Bytes {
        value.iter().map(|b| !b).collect()
    }

    fn corruption(fix_crc: bool) -> Corruption {
        Corruption {
            fix_crc,
            max_decompressed: 1 << 20,
        }
    }

    #[test]
    fn without_fix_crc_every_codec_fails_its_crc_check() {
        for codec in CODECS {
            let original = batch(4, codec);
            let corrupted = corrupt_batches(&original, corruption(false)).expect("corrupted");
            assert_eq!(corrupted.records, 3, "{codec:?}: the null value stays null");
            let error = decode(&corrupted.bytes).expect_err("stale CRC").to_string();
            assert!(
                error.contains("Cyclic redundancy check"),
                "{codec:?}: {error}"
            );
            assert_eq!(
                corrupted.bytes[CRC_AT..ATTRIBUTES_AT],
                original[CRC_AT..ATTRIBUTES_AT]
            );
        }
    }

    #[test]
    fn with_fix_crc_the_inverted_values_pass_as_valid() {
        for codec in CODECS {
            let original = batch(4, codec);
            let corrupted = corrupt_batches(&original, corruption(true)).expect("corrupted");
            let before = decode(&original).expect("original");
            let after = decode(&corrupted.bytes).expect("valid CRC");
            assert_eq!(after.len(), 4, "{codec:?}");
            for (was, now) in before.iter().zip(&after) {
                assert_eq!(now.value, was.value.as_deref().map(inverted), "{codec:?}");
                let same = |r: &Record| (r.key.clone(), r.headers.clone(), r.offset, r.timestamp);
                assert_eq!(same(now), same(was), "{codec:?}");
                assert_eq!(
                    (now.producer_id, now.sequence),
                    (was.producer_id, was.sequence)
                );
            }
            if codec == Compression::None {
                assert_eq!(corrupted.bytes.len(), original.len());
            }
        }
    }

    #[test]
    fn several_batches_and_a_truncated_tail() {
        let mut two = batch(2, Compression::None);
        two.extend(batch(3, Compression::Lz4));
        let tail = batch(2, Compression::None);
        two.extend_from_slice(&tail[..tail.len() - 5]);
        let corrupted = corrupt_batches(&two, corruption(true)).expect("corrupted");
        assert_eq!(corrupted.records, 4);
        assert!(corrupted.bytes.ends_with(&tail[..tail.len() - 5]));
    }

    #[test]
    fn control_legacy_empty_and_garbage_are_left_alone() {
        let mut control = batch(2, Compression::None);
        control[ATTRIBUTES_AT + 1] |= CONTROL as u8;
        assert_eq!(corrupt_batches(&control, corruption(true)), None);
        let mut legacy = batch(2, Compression::None);
        legacy[MAGIC_AT] = 1;
        assert_eq!(corrupt_batches(&legacy, corruption(true)), None);
        assert_eq!(corrupt_batches(&[], corruption(true)), None);
        assert_eq!(corrupt_batches(&[0xff; 100], corruption(true)), None);
        let mut garbled = batch(2, Compression::Gzip);
        let at = garbled.len() - 10;
        garbled[at..].fill(0xAA);
        assert_eq!(corrupt_batches(&garbled, corruption(true)), None);
    }

    #[test]
    fn decompression_is_bounded() {
        // 1 MiB of zeros compresses to a few KiB; a 64 KiB bound refuses it for every codec.
        let big = Bytes::from(vec![0u8; 1 << 20]);
        for codec in [1, 2, 3, 4] {
            let compressed = compress(codec, &big).expect("compress");
            assert!(compressed.len() < 64 << 10, "codec {codec}");
            assert_eq!(
                decompress(codec, &compressed, 64 << 10),
                None,
                "codec {codec}"
            );
            let plain = decompress(codec, &compressed, 1 << 20).expect("within bound");
            assert_eq!(plain.len(), 1 << 20);
        }
        // A raw snappy block declaring 4 GiB allocates nothing.
        assert_eq!(
            snappy_decompress(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0], 1 << 20),
            None
        );
    }
}
