//! Failures that are the platform's and credentials: permission, quota and API errors, unreadable
//! listings, the credential check, and secrets kept out of commands, reports and errors.

use std::sync::Arc;

use meshmig::backend::{Backend, BackendError};

use super::common::{backend, scenario, Recorded, CLUSTERS_JSON};

/// Issue 8, item 18: permission, quota and API-disabled errors are the platform's (exit 3), not
/// findings about the procedure.
#[tokio::test]
async fn platform_errors_are_infrastructure_failures() {
    // kubernetes-native-testbed/kubernetes-native-testbed#787 (a real gcloud output).
    let disabled = "ERROR: (gcloud.container.clusters.delete) ResponseError: code=403, message=Kubernetes Engine API is not enabled for this project. Please ensure it is enabled in Google Cloud Console and try again: visit https://console.cloud.google.com/apis/api/container.googleapis.com/overview?project=demo-project to do so.\n";
    let exec = Arc::new(Recorded::default().on(&["clusters delete"], 1, "", disabled));
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec, &s).await;
    let err = b.delete_cluster("cluster-with-csm").await.unwrap_err();
    assert!(!err.is_procedure(), "{err}");
    assert!(
        err.to_string().contains("is not enabled for this project"),
        "{err}"
    );
}

/// The same holds for the cluster creations A1 starts together: a quota error there is the
/// platform's (the text of googlecodelabs/feedback#950, a real gcloud output).
#[tokio::test]
async fn a_quota_error_while_creating_is_an_infrastructure_failure() {
    let quota = "ERROR: (gcloud.container.clusters.create) ResponseError: code=403, message=\n        (1) insufficient regional quota to satisfy request: resource \"CPUS\": request requires '12.0' and is short '4.0'. project has a quota of '8.0' with '8.0' available.\n";
    let exec = Arc::new(Recorded::default().on(&["clusters create"], 1, "", quota));
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec, &s).await;
    let err = b
        .create_cluster(s.cluster("cluster-with-istio").unwrap())
        .await
        .unwrap_err();
    assert!(!err.is_procedure(), "{err}");
    assert!(
        err.to_string().contains("insufficient regional quota"),
        "{err}"
    );
}

/// Issue 8, item 18: credentials are checked by asking gcloud for a token, which appears in no
/// output; without one the message says what to run, and that ADC is not enough.
#[tokio::test]
async fn credentials_are_checked_without_showing_the_token() {
    let with = Recorded::default().on(&["auth print-access-token"], 0, "ya29.a0SECRET-TOKEN\n", "");
    assert!(meshmig::backend::gke::check_credentials(&with)
        .await
        .is_ok());
    // Recorded from gcloud 528.0.0 with no account (`gcloud auth print-access-token`, exit 1,
    // on the development machine); the first line is NoActiveAccountException's, in
    // googlecloudsdk/core/credentials/exceptions.py.
    let without = Recorded::default().on(
        &["auth print-access-token"],
        1,
        "",
        "ERROR: (gcloud.auth.print-access-token) You do not currently have an active account selected.\nPlease run:\n\n  $ gcloud auth login\n\nto obtain new credentials.\n\nIf you have already logged in with a different account, run:\n\n  $ gcloud config set account ACCOUNT\n\nto select an already authenticated account to use.\n",
    );
    let err = meshmig::backend::gke::check_credentials(&without)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("gcloud auth login"), "{err}");
    assert!(err.contains("Application Default Credentials"), "{err}");
    assert!(!err.contains("ya29"), "{err}");
}

#[test]
fn credentials_never_appear_in_commands() {
    // It sets an environment variable: in a process of its own, so that the variable reaches no
    // other test of this binary.
    meshmig_testsupport::in_own_process(
        "gke::failures::credentials_never_appear_in_commands",
        || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(credentials_never_appear_in_commands_body())
        },
    );
}

async fn credentials_never_appear_in_commands_body() {
    std::env::set_var("GOOGLE_APPLICATION_CREDENTIALS", "/secret/key.json");
    let exec = Arc::new(Recorded::default());
    let s = scenario("canary-cluster.yaml");
    let b = backend(exec.clone(), &s).await;
    b.create_cluster(s.cluster("cluster-with-istio").unwrap())
        .await
        .unwrap();
    assert!(exec
        .calls()
        .iter()
        .all(|c| !c.contains("secret") && !c.contains("key.json")));
}

// What gcloud prints on stderr when a newer release exists: the text of NotificationMessage in
// googlecloudsdk/core/updater/schemas.py of gcloud 528.0.0 (the one installed on these machines),
// '\n\n' + message + '\n\n'. A listing's JSON on stdout must still be read.
const UPDATE_NOTICE: &str = "\n\nUpdates are available for some Google Cloud CLI components.  To install them,\nplease run:\n  $ gcloud components update\n\n";

/// Issue 8, item 14: stdout and stderr were concatenated, so an update notice made every
/// listing unparsable, and a parse failure became an empty list.
#[tokio::test]
async fn listings_read_stdout_only_and_a_parse_failure_is_an_infrastructure_error() {
    let s = scenario("canary-cluster.yaml");
    let exec =
        Arc::new(Recorded::default().on(&["clusters list"], 0, CLUSTERS_JSON, UPDATE_NOTICE));
    let b = backend(exec, &s).await;
    let clusters = b.clusters().await.unwrap();
    assert_eq!(
        clusters.get("cluster-with-csm").map(String::as_str),
        Some("RUNNING"),
        "{clusters:?}"
    );

    // Not gcloud's output for --format=json: what a wrapper or a broken install might print
    // instead of the JSON list.
    let exec = Arc::new(Recorded::default().on(
        &["clusters list"],
        0,
        "Listed 0 items.\nWARNING: something else\n",
        "",
    ));
    let b = backend(exec, &s).await;
    let err = b.clusters().await.unwrap_err();
    assert!(!err.is_procedure(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("reading the JSON list"), "{msg}");
    assert!(msg.contains("Listed 0 items."), "{msg}");
}

/// Issue 14, item 5: credentials that reach the harness through a tool's output, an error or the
/// environment appear in no report (text or JSON) and no error. Without `meshmig::redact`, every
/// one of them would be printed.
#[test]
fn credentials_appear_in_no_report_or_error() {
    // It sets an environment variable: in a process of its own, so that the variable reaches no
    // other test of this binary.
    meshmig_testsupport::in_own_process(
        "gke::failures::credentials_appear_in_no_report_or_error",
        || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(credentials_appear_in_no_report_or_error_body())
        },
    );
}

async fn credentials_appear_in_no_report_or_error_body() {
    const TOKEN: &str = "ya29.a0AfB_byC-SECRETtokenVALUE.0123";
    const KEY_BODY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCsecret";
    const KEY_ID: &str = "5f1d2e3c4b5a49688776655443322110deadbeef";
    const ENV_SECRET: &str = "s3cr3t-from-the-environment-42";
    std::env::set_var("MESHMIG_TEST_API_TOKEN", ENV_SECRET);
    // A service-account key file as Google writes it, echoed by a verbose tool.
    let key = format!(
        "{{\n  \"type\": \"service_account\",\n  \"project_id\": \"demo-project\",\n  \"private_key_id\": \"{KEY_ID}\",\n  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n{KEY_BODY}\\n-----END PRIVATE KEY-----\\n\",\n  \"client_email\": \"ci@demo-project.iam.gserviceaccount.com\"\n}}\n"
    );
    let create_stderr = format!(
        "DEBUG: Authorization: Bearer {TOKEN}\nUsing credentials from {key}Creating cluster cluster-with-istio-r2d2x9 in us-central1-a...\n....done.\n"
    );
    let rename_stderr = format!("error: token {ENV_SECRET} was refused\n");
    let exec = Arc::new(
        Recorded::default()
            .on(&["clusters create"], 0, "", &create_stderr)
            .on(&["rename-context"], 1, "", &rename_stderr)
            .on(
                &["clusters list"],
                0,
                r#"[{"name": "cluster-with-istio-r2d2x9", "zone": "us-central1-a", "status": "RUNNING"}]"#,
                "",
            )
            .on(&["memberships list"], 0, "[]", "")
            .empty_listings(),
    );
    let s = Arc::new(scenario("canary-cluster.yaml"));
    let b: Arc<dyn meshmig::backend::Backend> = Arc::new(backend(exec, &s).await);
    let report = meshmig::engine::run(
        s,
        b,
        meshmig::engine::RunOptions {
            progress: false,
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // The JSON, JUnit and HTML reports, one after the other.
    let json: String = meshmig::report::write_all(&report, dir.path())
        .unwrap()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let text: String = report
        .steps
        .iter()
        .map(meshmig::report::render_step)
        .chain([meshmig::report::render_end(&report)])
        .collect();
    let err = meshmig::error_chain(&BackendError::infra(
        "checking",
        format!("refused: {TOKEN} {ENV_SECRET}"),
    ));
    // A1 printed the token and the key; A2 failed on an error holding the environment's secret.
    assert!(
        text.contains("PASS A1") && text.contains("FAIL A2"),
        "{text}"
    );
    for secret in [TOKEN, "SECRETtokenVALUE", KEY_BODY, KEY_ID, ENV_SECRET] {
        assert!(!json.contains(secret), "{secret} in a report file");
        assert!(
            !text.contains(secret),
            "{secret} in the text report:\n{text}"
        );
        assert!(!err.contains(secret), "{secret} in an error: {err}");
    }
    assert!(text.contains("[REDACTED]"), "{text}");
    std::env::remove_var("MESHMIG_TEST_API_TOKEN");
}
