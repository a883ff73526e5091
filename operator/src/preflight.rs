//! Checks, before the controller starts, that the API it needs is there and allowed.
//!
//! Without them the watches would retry forever with a backoff and a log line per attempt; a
//! missing CRD or a missing ClusterRole is an installation mistake, so the operator says which
//! and exits non-zero instead.

use kafka_shock_crds::{KafkaFault, KafkaFaultInjection};
use kube::{Api, Client, Resource, api::ListParams, core::PartialObjectMeta};
use serde::de::DeserializeOwned;

/// What keeps the operator from starting.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// A CustomResourceDefinition is not installed.
    #[error(
        "the CustomResourceDefinition {crd} is not installed: install the kafka-shock Helm chart \
         (charts/kafka-shock), or `kubectl apply -f crds/` (it holds kafkafaults.kafkashock.io and \
         kafkafaultinjections.kafkashock.io)"
    )]
    MissingCrd {
        /// e.g. kafkafaults.kafkashock.io
        crd: String,
    },
    /// The operator's identity may not list a resource it watches.
    #[error(
        "not allowed to list {resource} ({message}): the operator's ServiceAccount needs the \
         chart's ClusterRole <release>-kafka-shock-operator"
    )]
    Forbidden {
        /// e.g. kafkafaults.kafkashock.io
        resource: String,
        /// The API server's message.
        message: String,
    },
    /// The API server cannot be reached or refused for another reason.
    #[error("cannot list {resource} on the Kubernetes API server: {source}")]
    Api {
        /// e.g. pods
        resource: String,
        /// Why.
        source: kube::Error,
    },
}

/// Lists one object of each resource the controller watches.
pub async fn check(client: &Client) -> Result<(), PreflightError> {
    can_list::<KafkaFault>(client).await?;
    can_list::<KafkaFaultInjection>(client).await?;
    can_list::<k8s_openapi::api::core::v1::Pod>(client).await?;
    can_list::<k8s_openapi::api::core::v1::Node>(client).await
}

async fn can_list<K>(client: &Client) -> Result<(), PreflightError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let group = K::group(&());
    let resource = if group.is_empty() {
        K::plural(&()).into_owned()
    } else {
        format!("{}.{group}", K::plural(&()))
    };
    let api: Api<PartialObjectMeta<K>> = Api::all(client.clone());
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() && !group.is_empty() => {
            Err(PreflightError::MissingCrd { crd: resource })
        }
        Err(kube::Error::Api(status)) if status.is_forbidden() => Err(PreflightError::Forbidden {
            resource,
            message: status.message.clone(),
        }),
        Err(source) => Err(PreflightError::Api { resource, source }),
    }
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use kafka_shock_daemon::mock::api_server;
    use serde_json::json;

    use super::*;

    /// `check` against an API server that answers the first list with `status` and `body`.
    async fn check_against(status: StatusCode, body: serde_json::Value) -> PreflightError {
        let (client, mut api) = api_server();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, "/apis/kafkashock.io/v1alpha1/kafkafaults")
                .await
                .answer_with(status, body);
        });
        let error = check(&client).await.unwrap_err();
        server.await.unwrap();
        error
    }

    #[tokio::test]
    async fn names_the_missing_crd() {
        let error = check_against(
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "the server could not find the requested resource"}),
        )
        .await;
        assert!(
            error.to_string().starts_with(
                "the CustomResourceDefinition kafkafaults.kafkashock.io is not installed"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn names_the_missing_permission() {
        let error = check_against(
            StatusCode::FORBIDDEN,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                   "message": "kafkafaults.kafkashock.io is forbidden: User \"system:serviceaccount:x:y\" cannot list resource"}),
        )
        .await;
        let text = error.to_string();
        assert!(
            text.starts_with("not allowed to list kafkafaults.kafkashock.io")
                && text.contains("ClusterRole"),
            "{text}"
        );
    }
}
