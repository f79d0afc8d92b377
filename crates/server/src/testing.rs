//! Testing support for users of switchyard (feature `testing`): a real server, in process, on
//! a temporary directory, in one line; devices reset between tests; waits driven by the watch
//! stream with timeouts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use switchyard_server::testing::TestServer;
//! use switchyard_types::DeviceCommandRequest;
//!
//! let server = TestServer::start().await;
//! let client = server.client();
//! client.create_device("sw1", "switch").await?;
//! let req = DeviceCommandRequest { duration: Some(2.0), ..Default::default() };
//! client.device_command("sw1", "switch_on", &req).await?;
//! // ... meanwhile, assert that the system under test copes with a busy switch ...
//! client.wait_for_state("sw1", "ON", Duration::from_secs(10)).await?;
//! server.reset_devices().await; // the next test starts from the initial states
//! server.stop().await;
//! # Ok(()) }
//! ```

use std::time::Duration;

use switchyard_client::Client;
use tempfile::TempDir;

use crate::{Config, Listeners, Server};

/// An in-process server on a temporary directory; the directory goes with it.
pub struct TestServer {
    server: Server,
    _dir: TempDir,
}

impl TestServer {
    /// Start a single node on a temp dir with the default config, and wait until it leads.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Like [`TestServer::start`], with `tweak` applied to the config first.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = TempDir::new().expect("a temp dir");
        let mut config = Config::new(dir.path());
        tweak(&mut config);
        let config = config.validate().expect("a valid test config");
        let listeners = Listeners::bind("127.0.0.1:0", "127.0.0.1:0")
            .await
            .expect("loopback listeners");
        let server = crate::start(config, listeners)
            .await
            .expect("the server starts");
        server
            .node
            .wait_for_leader(Duration::from_secs(10))
            .await
            .expect("a one-member cluster elects itself");
        TestServer { server, _dir: dir }
    }

    /// Base URL of the API.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// A client of this server.
    pub fn client(&self) -> Client {
        Client::new(self.url())
    }

    /// The running server (node, addresses).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Put every device back in its initial state, aborting anything in flight.
    pub async fn reset_devices(&self) {
        let client = self.client();
        for d in client.devices().await.expect("list devices") {
            client.reset_device(&d.name).await.expect("reset a device");
        }
    }

    /// Wait until device `name` is in `state` with nothing in flight.
    pub async fn wait_for_state(
        &self,
        name: &str,
        state: &str,
        timeout: Duration,
    ) -> Result<switchyard_types::Device, switchyard_client::Error> {
        self.client().wait_for_state(name, state, timeout).await
    }

    /// Stop the server and remove its directory.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}
