//! Counting the records of a Produce request without decompressing them.
//!
//! A v2 record batch states its record count in its header, which is exact
//! and costs nothing to read; decompressing payloads of hostile traffic
//! would cost CPU and memory for no better answer.

/// Offset of the `batchLength` field in a record batch.
const LENGTH_OFFSET: usize = 8;
/// Bytes before the batch that `batchLength` does not count.
const LOG_OVERHEAD: usize = 12;
/// Offset of the `magic` byte.
const MAGIC_OFFSET: usize = 16;
/// Offset of the `recordsCount` field in a v2 batch.
const COUNT_OFFSET: usize = 57;

/// Total records in a sequence of v2 record batches, or `None` when the
/// bytes are a legacy (v0/v1) message set or malformed.
pub(crate) fn count_records(mut batches: &[u8]) -> Option<u64> {
    let mut total: u64 = 0;
    while !batches.is_empty() {
        let length = usize::try_from(read_i32(batches, LENGTH_OFFSET)?).ok()?;
        if *batches.get(MAGIC_OFFSET)? != 2 {
            return None;
        }
        let count = u64::try_from(read_i32(batches, COUNT_OFFSET)?).ok()?;
        total = total.checked_add(count)?;
        batches = batches.get(LOG_OVERHEAD.checked_add(length)?..)?;
    }
    Some(total)
}

fn read_i32(bytes: &[u8], offset: usize) -> Option<i32> {
    let field: [u8; 4] = bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?;
    Some(i32::from_be_bytes(field))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// A real v2 record batch of `n` records, compressed or not.
    pub(crate) fn batch(n: usize, compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: 1_700_000_000_000,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!("value-{i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode batch");
        buf.freeze()
    }

    #[test]
    fn counts_plain_and_compressed_batches() {
        let mut two = batch(3, Compression::None).to_vec();
        two.extend_from_slice(&batch(4, Compression::Gzip));
        assert_eq!(count_records(&batch(3, Compression::None)), Some(3));
        assert_eq!(count_records(&two), Some(7));
        assert_eq!(count_records(&[]), Some(0));
    }

    #[test]
    fn truncated_or_legacy_is_unknown() {
        let b = batch(2, Compression::None);
        assert_eq!(count_records(&b[..b.len() - 1]), None);
        let mut legacy = b.to_vec();
        legacy[MAGIC_OFFSET] = 1;
        assert_eq!(count_records(&legacy), None);
    }
}
