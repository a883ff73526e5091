//! Letting go of a finalizer another party may be changing at the same moment: both the agent
//! (its injection's rules are gone) and the operator (the injection's pod or node is gone, so
//! no agent ever will) remove the injections' finalizer, and neither may clobber a change it
//! has not seen.

use std::fmt::Debug;

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde::de::DeserializeOwned;
use serde_json::json;

/// Removes `finalizer` from `object` (keeping any others), guarded by the resourceVersion it
/// was read at: the write fails with a conflict, rather than overwriting, if the object changed
/// meanwhile. Returns the object as written, or `None` when it is already gone.
pub async fn release_finalizer<K>(
    api: &Api<K>,
    object: &K,
    finalizer: &str,
) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let kept: Vec<&String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .collect();
    let patch = json!({
        "metadata": {
            "finalizers": kept,
            "resourceVersion": object.resource_version(),
        }
    });
    match api
        .patch(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(released) => Ok(Some(released)),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}
