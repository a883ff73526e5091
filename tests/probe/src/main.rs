//! `kafka-latency-probe`: what one Kafka client sees, to the microsecond. It opens one
//! connection to the leader of a topic's partition 0 and sends N requests (Produce of one record,
//! or Metadata), one in flight at a time, timing each from the write of the request to the last
//! byte of its response with the monotonic clock. It prints the percentiles (and, on request,
//! every sample), so benchmarks can compare enforcement modes by what a client really waits:
//! the Java perf tool reports whole milliseconds, far too coarse for "≤ 1 ms added p99".
//!
//! It is a measuring instrument, not a client library: fixed request versions every Kafka
//! 4.x broker speaks (Produce v9, Metadata v12), acks=1, no retries. A broker error in a response
//! is counted by name, and a connection that breaks ends the run with that error.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const PRODUCE_VERSION: i16 = 9;
const METADATA_VERSION: i16 = 12;
/// The largest response the probe reads; a larger size prefix means the stream is not Kafka.
const MAX_RESPONSE: usize = 64 << 20;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Time Kafka requests one at a time, to the microsecond"
)]
struct Args {
    /// A broker to ask for the partition leader (HOST:PORT).
    #[arg(long)]
    bootstrap: String,
    /// The topic: its partition 0 receives the Produce requests; Metadata asks for it.
    #[arg(long)]
    topic: String,
    /// What to send.
    #[arg(long, value_enum, default_value_t = Api::Produce)]
    api: Api,
    /// Requests timed.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Requests sent first and not timed (connection warm-up, JIT on the broker).
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Bytes of the record value of each Produce.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// The client.id of every request.
    #[arg(long, default_value = "latency-probe")]
    client_id: String,
    /// Also print every sample, in microseconds, one per line after the summary.
    #[arg(long)]
    samples: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Api {
    Produce,
    Metadata,
}

/// One connection to a broker, one request at a time.
struct Connection {
    stream: TcpStream,
    client_id: StrBytes,
    correlation: i32,
}

impl Connection {
    fn open(address: SocketAddr, client_id: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(10))
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Connection {
            stream,
            client_id: StrBytes::from_string(client_id.to_owned()),
            correlation: 0,
        })
    }

    /// The size-prefixed request frame of `body` as `key` at `version`.
    fn frame<R: Encodable>(&mut self, key: ApiKey, version: i16, body: &R) -> Bytes {
        self.correlation = self.correlation.wrapping_add(1);
        let mut buf = BytesMut::from(&[0u8; 4][..]);
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(self.client_id.clone()))
            .encode(&mut buf, key.request_header_version(version))
            .expect("a request header always encodes");
        body.encode(&mut buf, version)
            .expect("the probe's requests always encode");
        let size = u32::try_from(buf.len() - 4).expect("small request");
        buf[..4].copy_from_slice(&size.to_be_bytes());
        buf.freeze()
    }

    /// Sends `frame` and reads its response body (after the header), checking the correlation.
    fn round_trip(&mut self, key: ApiKey, version: i16, frame: &[u8]) -> anyhow::Result<Bytes> {
        self.stream
            .write_all(frame)
            .context("sending the request")?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .context("reading the response size (the connection broke)")?;
        let size = u32::from_be_bytes(size) as usize;
        if size > MAX_RESPONSE {
            bail!("response size prefix {size} is not Kafka's");
        }
        let mut body = vec![0u8; size];
        self.stream
            .read_exact(&mut body)
            .context("reading the response body")?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .context("decoding the response header")?;
        if header.correlation_id != self.correlation {
            bail!(
                "response correlation id {} for request {}",
                header.correlation_id,
                self.correlation
            );
        }
        Ok(body)
    }
}

fn metadata_request(topic: &str) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_owned())),
        ))]))
}

/// The address of the leader of `topic`'s partition 0, asked of `bootstrap`.
fn partition_leader(bootstrap: SocketAddr, topic: &str) -> anyhow::Result<SocketAddr> {
    let mut connection = Connection::open(bootstrap, "latency-probe-metadata")?;
    let frame = connection.frame(ApiKey::Metadata, METADATA_VERSION, &metadata_request(topic));
    let mut body = connection.round_trip(ApiKey::Metadata, METADATA_VERSION, &frame)?;
    let metadata = MetadataResponse::decode(&mut body, METADATA_VERSION)?;
    let found = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|name| name.0.as_str() == topic))
        .with_context(|| format!("the broker does not know topic {topic:?}"))?;
    if found.error_code != 0 {
        bail!("topic {topic:?}: broker error code {}", found.error_code);
    }
    let leader = found
        .partitions
        .iter()
        .find(|p| p.partition_index == 0)
        .map(|p| p.leader_id)
        .with_context(|| format!("topic {topic:?} has no partition 0"))?;
    let broker = metadata
        .brokers
        .iter()
        .find(|b| b.node_id == leader)
        .with_context(|| format!("the leader {} of {topic}-0 is not listed", leader.0))?;
    (broker.host.as_str(), u16::try_from(broker.port)?)
        .to_socket_addrs()?
        .next()
        .context("the leader's host does not resolve")
}

/// One Produce of a single record of `size` bytes to partition 0.
fn produce_request(topic: &str, size: usize) -> anyhow::Result<ProduceRequest> {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from(vec![b'x'; size])),
        headers: Default::default(),
    };
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch.freeze())),
                ]),
        ]))
}

/// The non-zero error codes a response carries (per partition for Produce, per topic for
/// Metadata).
fn errors_in(api: Api, mut body: Bytes) -> anyhow::Result<Vec<i16>> {
    Ok(match api {
        Api::Produce => ProduceResponse::decode(&mut body, PRODUCE_VERSION)?
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
            .filter(|code| *code != 0)
            .collect(),
        Api::Metadata => MetadataResponse::decode(&mut body, METADATA_VERSION)?
            .topics
            .iter()
            .map(|t| t.error_code)
            .filter(|code| *code != 0)
            .collect(),
    })
}

/// Kafka's name of an error code (`NOT_LEADER_OR_FOLLOWER`), or the number when unknown.
fn error_name(code: i16) -> String {
    kafka_shock_agent::decode::error_name(code).unwrap_or_else(|| code.to_string())
}

/// The value at quantile `q` of sorted `samples` (nearest rank).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bootstrap = args
        .bootstrap
        .to_socket_addrs()
        .with_context(|| format!("--bootstrap {}", args.bootstrap))?
        .next()
        .context("--bootstrap does not resolve")?;
    let leader = partition_leader(bootstrap, &args.topic)?;
    let mut connection = Connection::open(leader, &args.client_id)?;
    let (key, version) = match args.api {
        Api::Produce => (ApiKey::Produce, PRODUCE_VERSION),
        Api::Metadata => (ApiKey::Metadata, METADATA_VERSION),
    };
    let produce = produce_request(&args.topic, args.size)?;
    let metadata = metadata_request(&args.topic);
    let mut samples = Vec::with_capacity(args.requests);
    let mut errors = std::collections::BTreeMap::<i16, u64>::new();
    for n in 0..args.warmup + args.requests {
        let frame = match args.api {
            Api::Produce => connection.frame(key, version, &produce),
            Api::Metadata => connection.frame(key, version, &metadata),
        };
        let sent = Instant::now();
        let body = connection
            .round_trip(key, version, &frame)
            .with_context(|| format!("request {} of {}", n + 1, args.warmup + args.requests))?;
        let took = sent.elapsed();
        if n >= args.warmup {
            samples.push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            for code in errors_in(args.api, body)? {
                *errors.entry(code).or_default() += 1;
            }
        }
    }
    let mut sorted = samples.clone();
    sorted.sort_unstable();
    let mean = sorted.iter().sum::<u64>() as f64 / sorted.len().max(1) as f64;
    let summary = serde_json::json!({
        "api": format!("{:?}", args.api),
        "broker": leader.to_string(),
        "requests": sorted.len(),
        "errors": errors
            .iter()
            .map(|(code, count)| (error_name(*code), serde_json::Value::from(*count)))
            .collect::<serde_json::Map<_, _>>(),
        "min_us": sorted.first().copied().unwrap_or(0),
        "p50_us": quantile(&sorted, 0.50),
        "p90_us": quantile(&sorted, 0.90),
        "p99_us": quantile(&sorted, 0.99),
        "p999_us": quantile(&sorted, 0.999),
        "max_us": sorted.last().copied().unwrap_or(0),
        "mean_us": (mean * 10.0).round() / 10.0,
    });
    println!("{summary}");
    if args.samples {
        for sample in samples {
            println!("{sample}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_errors_as_kafka_does() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(27), "REBALANCE_IN_PROGRESS");
        assert_eq!(error_name(-9999), "UNKNOWN(-9999)");
    }

    #[test]
    fn nearest_rank_quantiles() {
        let sorted: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&sorted, 0.5), 500);
        assert_eq!(quantile(&sorted, 0.99), 990);
        assert_eq!(quantile(&sorted, 0.999), 999);
        assert_eq!(quantile(&sorted, 1.0), 1000);
        assert_eq!(quantile(&[7], 0.999), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn requests_encode_with_their_size_prefix() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let mut connection = Connection::open(address, "probe").unwrap();
        let frame = connection.frame(
            ApiKey::Produce,
            PRODUCE_VERSION,
            &produce_request("orders", 100).unwrap(),
        );
        let size = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        assert_eq!(
            i16::from_be_bytes([frame[4], frame[5]]),
            ApiKey::Produce as i16
        );
        assert_eq!(connection.correlation, 1);
    }
}
