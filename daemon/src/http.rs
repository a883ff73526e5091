//! The `/metrics` (Prometheus, OpenMetrics text) and `/healthz` endpoint of a kafka-shock
//! process, and the `--metrics-addr` it listens on. Each process hands over what it exports
//! through [`Exported`]: its registry, and whether it is healthy.

use std::{future::Future, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::net::TcpListener;

/// What a process serves: its metrics and its health.
pub trait Exported: Send + Sync + 'static {
    /// The registry `/metrics` encodes on every scrape.
    fn registry(&self) -> &Registry;

    /// `Ok` when `/healthz` should answer 200; else why not, answered with 503.
    fn health(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

/// Why the endpoint cannot be set up or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// `--metrics-addr` is not `:PORT` or `HOST:PORT`.
    #[error(
        "--metrics-addr {0:?}: expected :PORT or HOST:PORT (e.g. :8080, 127.0.0.1:8080, [::1]:8080)"
    )]
    BadAddress(String),
    /// The address cannot be listened on (in use, not local, no permission).
    #[error("cannot listen on {address} for /metrics: {source}")]
    Listen {
        /// The address as given.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP server stopped on an I/O error.
    #[error("the /metrics server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// `--metrics-addr` as a host and a port to bind: `:PORT` means every IPv4 interface (as in the
/// chart's `--metrics-addr=:8080`), `HOST:PORT` that host (a name, an IPv4 or a bracketed IPv6
/// address).
pub fn listen_addr(text: &str) -> Result<(String, u16), HttpError> {
    let bad = || HttpError::BadAddress(text.to_owned());
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = match host {
        "" => "0.0.0.0",
        bracketed if bracketed.starts_with('[') => bracketed
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .filter(|h| !h.is_empty())
            .ok_or_else(bad)?,
        plain if plain.contains(':') || plain.contains(']') => return Err(bad()),
        plain => plain,
    };
    Ok((host.to_owned(), port))
}

/// Binds `--metrics-addr`.
pub async fn listen(text: &str) -> Result<TcpListener, HttpError> {
    let (host, port) = listen_addr(text)?;
    TcpListener::bind((host.as_str(), port))
        .await
        .map_err(|source| HttpError::Listen {
            address: text.to_owned(),
            source,
        })
}

/// Serves `/metrics` and `/healthz` from `exported` on `listener` until `shutdown` completes.
pub async fn serve<E: Exported>(
    listener: TcpListener,
    exported: Arc<E>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let app = Router::new()
        .route("/metrics", get(scrape::<E>))
        .route("/healthz", get(health::<E>))
        .with_state(exported);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(HttpError::Serve)
}

async fn scrape<E: Exported>(State(exported): State<Arc<E>>) -> impl IntoResponse {
    let mut text = String::new();
    match encode(&mut text, exported.registry()) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "could not encode the metrics\n".to_owned(),
        ),
    }
}

async fn health<E: Exported>(State(exported): State<Arc<E>>) -> impl IntoResponse {
    match exported.health() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn reads_port_only_and_host_port() {
        assert_eq!(listen_addr(":8080").unwrap(), ("0.0.0.0".into(), 8080));
        assert_eq!(listen_addr("127.0.0.1:9").unwrap(), ("127.0.0.1".into(), 9));
        assert_eq!(listen_addr("[::1]:80").unwrap(), ("::1".into(), 80));
        assert_eq!(listen_addr("localhost:0").unwrap(), ("localhost".into(), 0));
        for bad in ["8080", ":http", "::1:80", "[]:80", "host:70000", ""] {
            let error = listen_addr(bad).unwrap_err();
            assert!(
                error.to_string().contains("expected :PORT"),
                "{bad}: {error}"
            );
        }
    }

    struct Process {
        registry: Registry,
        ready: AtomicBool,
    }

    impl Exported for Process {
        fn registry(&self) -> &Registry {
            &self.registry
        }

        fn health(&self) -> Result<(), &'static str> {
            if self.ready.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("not ready yet")
            }
        }
    }

    /// The status line and body of `GET path` on `address`.
    async fn get(address: std::net::SocketAddr, path: &str) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_owned(), body.to_owned())
    }

    #[tokio::test]
    async fn serves_the_registry_and_the_health_until_shut_down() {
        let mut registry = Registry::with_prefix("test");
        let counter = Counter::<u64>::default();
        registry.register("things", "Things counted", counter.clone());
        counter.inc();
        let process = Arc::new(Process {
            registry,
            ready: AtomicBool::new(false),
        });
        let listener = listen("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, process.clone(), async {
            let _ = stopped.await;
        }));

        let (status, body) = get(address, "/healthz").await;
        assert!(status.contains("503"), "{status}");
        assert_eq!(body, "not ready yet\n");
        process.ready.store(true, Ordering::Relaxed);
        let (status, body) = get(address, "/healthz").await;
        assert!(status.contains("200"), "{status}");
        assert_eq!(body, "ok\n");
        let (status, body) = get(address, "/metrics").await;
        assert!(status.contains("200"), "{status}");
        assert!(body.contains("test_things_total 1"), "{body}");

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
