//! The test server helper itself: starts JetStream, restarts on the same port and store.

mod support {
    pub mod server;
}

use std::time::Duration;

use async_nats::jetstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarts_on_the_same_port_and_keeps_its_store() {
    let Some(mut server) = support::server::nats_server_or_skip() else {
        return;
    };
    let port = server.port();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: "T".to_owned(),
        subjects: vec!["t.>".to_owned()],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("create stream");
    js.publish("t.1", "one".into())
        .await
        .expect("publish")
        .await
        .expect("ack");

    server.restart();
    assert_eq!(server.port(), port);
    assert!(server.is_running());
    let client = async_nats::connect(server.url()).await.expect("reconnect");
    let js = jetstream::new(client);
    let mut found = None;
    for _ in 0..100 {
        if let Ok(mut stream) = js.get_stream("T").await {
            if let Ok(info) = stream.info().await {
                found = Some(info.state.messages);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        found,
        Some(1),
        "the stream and its message survive a restart"
    );
    server.stop();
    assert!(!server.is_running());
}
