//! The README's worked example of `switchyard_server::testing`: a test of code that drives a
//! slow device, with state kept between steps and reset between tests.

use std::time::Duration;

use switchyard_client::CommandStarted;
use switchyard_server::testing::TestServer;
use switchyard_types::DeviceCommandRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_switch_is_busy_then_on_and_reset_between_tests() {
    let server = TestServer::start().await;
    let client = server.client();
    client.create_device("sw1", "switch").await.unwrap();

    // Start a 2 s switch-on in the background; meanwhile the switch refuses commands.
    let req = DeviceCommandRequest {
        duration: Some(2.0),
        ..Default::default()
    };
    let started = client
        .device_command("sw1", "switch_on", &req)
        .await
        .unwrap();
    assert!(matches!(started, CommandStarted::Started(_)));
    let busy = client
        .device_command("sw1", "switch_off", &Default::default())
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Some("busy"));

    // Wait for the state, driven by the watch stream, with a timeout.
    let d = server
        .wait_for_state("sw1", "ON", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(d.transition.is_none());

    // A wait that cannot be met ends with a timeout error, not a hang.
    let err = server
        .wait_for_state("sw1", "OFF", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, switchyard_client::Error::Timeout(_)), "{err}");

    // The handle API: a blocking command in one line.
    let sw = client.device_handle("sw1");
    let d = sw.command("switch_off").duration(0.1).wait().await.unwrap();
    assert_eq!(d.state.as_deref(), Some("OFF"));
    sw.command("switch_on").duration(0.1).start().await.unwrap();
    sw.wait_for_state("ON", Duration::from_secs(10))
        .await
        .unwrap();

    // Between tests: back to the initial state.
    server.reset_devices().await;
    assert_eq!(
        client.device("sw1").await.unwrap().state.as_deref(),
        Some("OFF")
    );
    server.stop().await;
}
