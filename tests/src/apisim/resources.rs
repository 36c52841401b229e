//! The resource types the simulator serves: the built-in ones (fixed) and
//! the custom ones (from CustomResourceDefinitions), with what differs per
//! type (scope, status subresource, generation, selectable fields).

use std::collections::BTreeMap;

use serde_json::Value;

/// Which built-in behaviour a type gets (defaults, validation, hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Namespace,
    Node,
    Pod,
    ServiceAccount,
    ConfigMap,
    Secret,
    Service,
    Lease,
    Pdb,
    CoreEvent,
    Event,
    Crd,
    Custom,
}

/// Group and resource: the key of a type's storage.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gr {
    pub group: String,
    pub resource: String,
}

impl Gr {
    pub fn new(group: &str, resource: &str) -> Gr {
        Gr { group: group.to_owned(), resource: resource.to_owned() }
    }
}

/// One printer column of a CRD version.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub description: String,
    pub priority: i64,
    pub format: String,
}

/// What a CRD adds to its type: the schema and printer columns per version.
#[derive(Debug, Clone, Default)]
pub struct CrdInfo {
    /// `openAPIV3Schema` per served version.
    pub schemas: BTreeMap<String, Value>,
    pub columns: BTreeMap<String, Vec<PrinterColumn>>,
    /// Versions with a status subresource.
    pub status_versions: Vec<String>,
    /// The CRD object's name (`plural.group`).
    pub crd_name: String,
}

#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    /// The storage version; objects are kept in it.
    pub version: String,
    /// Served versions, preferred first.
    pub served: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Has a `/status` subresource: main writes keep status, status writes keep the rest.
    pub status: bool,
    /// `metadata.generation` is set to 1 and bumped when anything but
    /// metadata and status changes.
    pub generation: bool,
    pub flavor: Flavor,
    /// Selectable fields besides metadata.name and metadata.namespace.
    pub field_selectors: &'static [&'static str],
    pub crd: Option<CrdInfo>,
}

impl ResourceType {
    pub fn gr(&self) -> Gr {
        Gr::new(&self.group, &self.plural)
    }

    pub fn api_version_of(&self, version: &str) -> String {
        if self.group.is_empty() { version.to_owned() } else { format!("{}/{version}", self.group) }
    }

    /// apiVersion of the storage version.
    pub fn api_version(&self) -> String {
        self.api_version_of(&self.version)
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn is_custom(&self) -> bool {
        self.flavor == Flavor::Custom
    }

    /// The CRD schema of the storage version.
    pub fn schema(&self) -> Option<&Value> {
        self.crd.as_ref().and_then(|c| c.schemas.get(&self.version))
    }

    /// Whether kube-apiserver would serve `version` of this type.
    pub fn serves(&self, version: &str) -> bool {
        self.served.iter().any(|v| v == version)
    }
}

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    plural: &str,
    singular: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    generation: bool,
    flavor: Flavor,
    fields: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group: group.to_owned(),
        version: "v1".to_owned(),
        served: vec!["v1".to_owned()],
        plural: plural.to_owned(),
        singular: singular.to_owned(),
        kind: kind.to_owned(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        status,
        generation,
        flavor,
        field_selectors: fields,
        crd: None,
    }
}

/// The built-in types, in discovery order.
pub fn builtins() -> Vec<ResourceType> {
    use Flavor::*;
    vec![
        builtin("", "configmaps", "configmap", "ConfigMap", true, &["cm"], false, false, ConfigMap, &[]),
        builtin("", "events", "event", "Event", true, &["ev"], false, false, CoreEvent, EVENT_FIELDS),
        builtin("", "namespaces", "namespace", "Namespace", false, &["ns"], true, false, Namespace, &["status.phase"]),
        builtin("", "nodes", "node", "Node", false, &["no"], true, false, Node, &["spec.unschedulable"]),
        builtin("", "pods", "pod", "Pod", true, &["po"], true, true, Pod, POD_FIELDS),
        builtin("", "secrets", "secret", "Secret", true, &[], false, false, Secret, &["type"]),
        builtin(
            "",
            "serviceaccounts",
            "serviceaccount",
            "ServiceAccount",
            true,
            &["sa"],
            false,
            false,
            ServiceAccount,
            &[],
        ),
        builtin("", "services", "service", "Service", true, &["svc"], true, false, Service, &[]),
        builtin("coordination.k8s.io", "leases", "lease", "Lease", true, &[], false, false, Lease, &[]),
        builtin(
            "policy",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            "PodDisruptionBudget",
            true,
            &["pdb"],
            true,
            true,
            Pdb,
            &[],
        ),
        builtin("events.k8s.io", "events", "event", "Event", true, &["ev"], false, false, Event, &[]),
        builtin(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "customresourcedefinition",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
            true,
            Crd,
            &[],
        ),
    ]
}

/// A subresource or create-only resource that is served but not stored
/// as a type of its own (for discovery).
#[derive(Debug, Clone)]
pub struct Virtual {
    pub group: &'static str,
    pub name: &'static str,
    pub namespaced: bool,
    pub kind: &'static str,
    /// Group/version of the kind when it differs from the list's (`pods/eviction` is policy/v1).
    pub kind_gv: Option<(&'static str, &'static str)>,
}

pub fn virtuals() -> Vec<Virtual> {
    vec![
        Virtual {
            group: "",
            name: "pods/eviction",
            namespaced: true,
            kind: "Eviction",
            kind_gv: Some(("policy", "v1")),
        },
        Virtual {
            group: "",
            name: "serviceaccounts/token",
            namespaced: true,
            kind: "TokenRequest",
            kind_gv: Some(("authentication.k8s.io", "v1")),
        },
        Virtual {
            group: "authentication.k8s.io",
            name: "tokenreviews",
            namespaced: false,
            kind: "TokenReview",
            kind_gv: None,
        },
        Virtual {
            group: "authentication.k8s.io",
            name: "selfsubjectreviews",
            namespaced: false,
            kind: "SelfSubjectReview",
            kind_gv: None,
        },
    ]
}
