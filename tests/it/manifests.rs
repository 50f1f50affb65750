//! The Kubernetes and Dapr manifests say what the service needs: parse each
//! one and check the fields an operator relies on.

use serde_json::Value;

fn load(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            serde_norway::from_value::<Value>(serde::Deserialize::deserialize(doc).unwrap())
                .unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn one(path: &str, kind: &str) -> Value {
    load(path)
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("{path} has no {kind}"))
}

fn env_secret(container: &Value, name: &str) -> (String, String) {
    let var = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"));
    let r = &var["valueFrom"]["secretKeyRef"];
    (
        r["name"].as_str().unwrap().to_owned(),
        r["key"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn deployment_runs_with_a_dapr_sidecar_and_its_tokens() {
    let d = one("deploy/deployment.yaml", "Deployment");
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["dapr.io/enabled"], "true");
    assert_eq!(ann["dapr.io/app-id"], "budpipeline");
    assert_eq!(ann["dapr.io/app-port"], "8010");
    let app_secret = ann["dapr.io/app-token-secret"]
        .as_str()
        .expect("app-token-secret");
    let api_secret = ann["dapr.io/api-token-secret"]
        .as_str()
        .expect("api-token-secret");

    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    // secretKeyRef, not envFrom: envFrom of a secret with key `token` names the variable `token`.
    assert!(
        c.get("envFrom").is_none(),
        "tokens must be mapped with secretKeyRef"
    );
    assert_eq!(
        env_secret(c, "APP_API_TOKEN"),
        (app_secret.to_owned(), "token".to_owned())
    );
    assert_eq!(
        env_secret(c, "DAPR_API_TOKEN"),
        (api_secret.to_owned(), "token".to_owned())
    );
    assert!(!env_secret(c, "DATABASE_URL").0.is_empty());

    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());

    let grace = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SHUTDOWN_GRACE_SECONDS")
        .and_then(|e| e["value"].as_str())
        .map(|v| v.parse::<u64>().unwrap())
        .unwrap_or(20);
    let termination = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        termination > grace,
        "pod grace {termination}s must exceed the service's {grace}s"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
}

#[test]
fn a_disruption_budget_and_a_kustomization_cover_the_deployment() {
    let pdb = one("deploy/pdb.yaml", "PodDisruptionBudget");
    assert!(pdb["spec"]["minAvailable"].is_number() || pdb["spec"]["maxUnavailable"].is_number());
    let k = load("deploy/kustomization.yaml").remove(0);
    let resources: Vec<&str> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for needed in ["deployment.yaml", "service.yaml", "pdb.yaml"] {
        assert!(resources.contains(&needed), "kustomization lacks {needed}");
    }
    for r in resources {
        assert!(
            std::path::Path::new("deploy").join(r).exists(),
            "kustomization names missing {r}"
        );
    }
}

fn env_value(container: &Value, name: &str) -> String {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no env {name} with a value"))
        .to_owned()
}

#[test]
fn dapr_subscription_matches_the_programmatic_one_of_a_bud_install() {
    let d = one("deploy/deployment.yaml", "Deployment");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let (pubsub, topic) = (
        env_value(c, "PUBSUB_NAME"),
        env_value(c, "WORKFLOW_EVENTS_TOPIC"),
    );
    // The names a Bud Runtime install uses (its Helm chart).
    assert_eq!(
        (pubsub.as_str(), topic.as_str()),
        ("bud-pubsub", "budpipelineEvents")
    );
    assert_eq!(env_value(c, "PUBLISH_FORMAT"), "cloudevent");
    let s = one("dapr/subscription.yaml", "Subscription");
    assert_eq!(s["spec"]["topic"], topic.as_str());
    assert_eq!(s["spec"]["pubsubname"], pubsub.as_str());
    assert_eq!(s["spec"]["routes"]["default"], "/workflow-events");
    assert_eq!(s["spec"]["deadLetterTopic"], format!("{topic}-dlq"));
    let component = one("dapr/components/pubsub.yaml", "Component");
    assert_eq!(component["metadata"]["name"], pubsub.as_str());
    let r = one("dapr/resiliency.yaml", "Resiliency");
    assert!(r["spec"]["targets"]["components"][pubsub.as_str()].is_object());
}

#[test]
fn dapr_resiliency_does_not_retry_invocations_the_service_retries() {
    let r = one("dapr/resiliency.yaml", "Resiliency");
    let spec = &r["spec"];
    let budcluster = &spec["targets"]["apps"]["budcluster"];
    assert!(budcluster.is_object(), "budcluster target missing");
    if let Some(policy) = budcluster["retry"].as_str() {
        assert_eq!(
            spec["policies"]["retries"][policy]["maxRetries"], 0,
            "Dapr must not multiply retries"
        );
    }
    assert!(
        budcluster.get("circuitBreaker").is_none(),
        "the service owns the breaker"
    );
}

#[test]
fn the_deployment_sends_traces_to_the_bud_collector_over_otlp_http() {
    let d = one("deploy/deployment.yaml", "Deployment");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    // `<release>-otel-collector` of the Bud Helm chart; 4318 is its OTLP/HTTP port
    // (4317 is gRPC, which this service does not speak).
    assert_eq!(
        env_value(c, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        "http://bud-otel-collector:4318"
    );
    assert_eq!(env_value(c, "OTEL_SERVICE_NAME"), "budpipeline");
    // Kubernetes expands $(VAR) only for variables defined earlier in the list.
    let names: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    let position = |name: &str| names.iter().position(|n| *n == name).unwrap();
    let attributes = env_value(c, "OTEL_RESOURCE_ATTRIBUTES");
    for var in ["POD_NAME", "POD_NAMESPACE"] {
        assert!(attributes.contains(&format!("$({var})")), "{attributes}");
        assert!(position(var) < position("OTEL_RESOURCE_ATTRIBUTES"));
    }
}
