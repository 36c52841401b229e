//! Refusing to run beside the original Bottlerocket update operator.
//!
//! Both use the same CRD group and node label, so two operators could act
//! on the same nodes. At start the leader looks for the original operator's
//! controller and apiserver Deployments (the same names whether it was
//! installed from its manifest or its Helm charts), and for BottlerocketShadows stored in its older
//! version (`v1`) or a CRD that converts through its webhook; if it finds
//! any, it refuses to start and says how to move over (README, "Moving over
//! from the original operator").

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;

/// The original operator's Deployments: its controller, then its apiserver.
pub const ORIGINAL_DEPLOYMENTS: [&str; 2] = ["brupop-controller-deployment", "brupop-apiserver"];
const SHADOW_CRD: &str = "bottlerocketshadows.brupop.bottlerocket.aws";

/// The step, as the README gives it.
pub const STEPS: &str = "remove the original operator first: run \
    `sh deploy/remove-original-operator.sh <namespace>` from this operator's release \
    (it deletes the original's Deployments, DaemonSet, Services, accounts, RBAC, PriorityClass, \
    certificates and its CRD with the old shadows, which the new agents recreate, and checks nothing remains), \
    then apply this operator's manifest again (README: Moving over from the original operator)";

/// What was found of the original operator. Pure.
pub fn assess(crd: Option<&CustomResourceDefinition>, deployments: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    if !deployments.is_empty() {
        found.push(format!("its Deployments {} are installed", deployments.join(", ")));
    }
    if let Some(crd) = crd {
        let stored = crd.status.as_ref().and_then(|s| s.stored_versions.clone()).unwrap_or_default();
        if stored.iter().any(|v| v != "v2") {
            found.push(format!("BottlerocketShadows are stored in its older version(s) {stored:?}"));
        }
        let versions: Vec<&str> = crd.spec.versions.iter().map(|v| v.name.as_str()).collect();
        if versions.iter().any(|v| *v != "v2") {
            found.push(format!("the BottlerocketShadow CRD serves its versions {versions:?}"));
        }
        if crd.spec.conversion.as_ref().is_some_and(|c| c.strategy == "Webhook") {
            found.push("the BottlerocketShadow CRD converts through its webhook".to_owned());
        }
    }
    found
}

/// Looks for the original operator; `Err` says what was found and what to do.
pub async fn check(client: &kube::Client, namespace: &str) -> Result<(), String> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get_opt(SHADOW_CRD).await.map_err(|e| format!("reading the CRD {SHADOW_CRD}: {e}"))?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let mut deployments = Vec::new();
    for name in ORIGINAL_DEPLOYMENTS {
        match api.get_opt(name).await {
            Ok(Some(_)) => deployments.push(name),
            Ok(None) => {}
            // A cluster without the apps API (the test simulator) has no such Deployment.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(format!("looking for the original operator's Deployment {name}: {e}")),
        }
    }
    let found = assess(crd.as_ref(), &deployments);
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the original Bottlerocket update operator is installed ({}); two operators must never act on the same nodes, so this one will not start: {STEPS}",
            found.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceConversion, CustomResourceDefinitionStatus, CustomResourceDefinitionVersion,
    };

    fn crd(versions: &[&str], stored: &[&str]) -> CustomResourceDefinition {
        let mut c = model::crds().remove(0);
        c.spec.versions = versions
            .iter()
            .map(|v| CustomResourceDefinitionVersion {
                name: (*v).into(),
                served: true,
                storage: *v == "v2",
                ..Default::default()
            })
            .collect();
        c.status = Some(CustomResourceDefinitionStatus {
            stored_versions: Some(stored.iter().map(|s| (*s).to_owned()).collect()),
            ..Default::default()
        });
        c
    }

    #[test]
    fn our_own_crd_is_not_the_original_operator() {
        assert!(assess(Some(&crd(&["v2"], &["v2"])), &[]).is_empty());
        assert!(assess(None, &[]).is_empty());
    }

    #[test]
    fn the_original_controller_or_its_stored_versions_are_found() {
        let found = assess(None, &ORIGINAL_DEPLOYMENTS);
        assert_eq!(found, ["its Deployments brupop-controller-deployment, brupop-apiserver are installed"]);
        let found = assess(Some(&crd(&["v1", "v2"], &["v1", "v2"])), &[]);
        assert_eq!(found.len(), 2, "{found:?}");
        let mut webhook = crd(&["v2"], &["v2"]);
        webhook.spec.conversion = Some(CustomResourceConversion { strategy: "Webhook".into(), webhook: None });
        assert_eq!(assess(Some(&webhook), &[]).len(), 1);
    }
}
