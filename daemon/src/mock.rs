//! A mocked API server for the reconcile tests of both binaries (tower-test, as in kube-rs's
//! controller-rs fixtures): a test scripts the requests a reconcile must make, in order,
//! answers each, and fails on any other (the reconcile then waits for an answer forever, or
//! errs once the server is gone). Only built with the `mock` feature, for tests.

use http::{Method, Request, Response, StatusCode};
use kube::{Client, client::Body};
use serde_json::{Value, json};
use tower_test::mock::{self, SendResponse};

/// One request the client made: its query, content type and JSON body (or Null), and where
/// to answer it.
pub struct Call {
    pub query: String,
    pub content_type: String,
    pub body: Value,
    reply: SendResponse<Response<Body>>,
}

impl Call {
    /// Answers 200 with `body`.
    pub fn answer(self, body: Value) {
        self.answer_with(StatusCode::OK, body);
    }

    /// Answers `status` with `body`.
    pub fn answer_with(self, status: StatusCode, body: Value) {
        let response = Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
            .expect("a valid response");
        self.reply.send_response(response);
    }

    /// Answers 404, as the API server does for an object that is gone.
    pub fn not_found(self) {
        self.answer_with(
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
        );
    }
}

/// The mocked API server's side.
pub struct ApiServer(mock::Handle<Request<Body>, Response<Body>>);

/// A client whose every request goes to the returned [`ApiServer`].
pub fn api_server() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer(handle))
}

impl ApiServer {
    /// The next request, which must be `method` on `path` (the test panics otherwise).
    pub async fn expect(&mut self, method: Method, path: &str) -> Call {
        let (request, reply) = self
            .0
            .next_request()
            .await
            .unwrap_or_else(|| panic!("expected {method} {path}; the client went away"));
        assert_eq!(
            (request.method(), request.uri().path()),
            (&method, path),
            "unexpected request {}",
            request.uri()
        );
        let query = request.uri().query().unwrap_or_default().to_owned();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("a request body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Call {
            query,
            content_type,
            body,
            reply,
        }
    }
}
