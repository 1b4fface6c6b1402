//! Pieces of the kind backend that run without a container engine: the GCE metadata stand-in the
//! frontends query (with the `Metadata-Flavor: Google` header the metadata client sends).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

#[tokio::test]
async fn the_metadata_stand_in_answers_as_the_gce_metadata_server() {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 92, 1)), 8080);
    let server = tokio::spawn(meshmig::backend::kind::metadata_server(
        addr,
        "cluster-with-csm".into(),
        "us-central1-a".into(),
    ));
    let client = reqwest::Client::new();
    let get = |path: &str, flavor: bool| {
        let mut r = client.get(format!("http://{addr}{path}"));
        if flavor {
            r = r.header("Metadata-Flavor", "Google");
        }
        r.send()
    };
    let mut tries = 0;
    let name = loop {
        match get("/computeMetadata/v1/instance/attributes/cluster-name", true).await {
            Ok(r) => break r,
            Err(_) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(name.text().await.unwrap(), "cluster-with-csm");
    let zone = get("/computeMetadata/v1/instance/zone", true)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(zone, "projects/000000000000/zones/us-central1-a");
    let refused = get(
        "/computeMetadata/v1/instance/attributes/cluster-name",
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        refused.status().as_u16(),
        403,
        "without Metadata-Flavor: Google"
    );
    server.abort();
}
