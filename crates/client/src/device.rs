//! A handle on one device: `client.device_handle("sw1").command("switch_on").duration(2.0).wait()`.

use std::time::Duration;

use switchyard_types::{Device, DeviceCommandRequest};

use crate::{Client, CommandStarted, Error};

/// One device of one server.
#[derive(Clone, Debug)]
pub struct DeviceHandle {
    client: Client,
    name: String,
}

/// A command being put together; send it with [`CommandBuilder::start`] or
/// [`CommandBuilder::wait`].
#[derive(Clone, Debug)]
pub struct CommandBuilder {
    handle: DeviceHandle,
    command: String,
    req: DeviceCommandRequest,
}

impl Client {
    /// A handle on device `name`.
    pub fn device_handle(&self, name: &str) -> DeviceHandle {
        DeviceHandle {
            client: self.clone(),
            name: name.to_string(),
        }
    }
}

impl DeviceHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device as it is now.
    pub async fn get(&self) -> Result<Device, Error> {
        self.client.device(&self.name).await
    }

    /// Prepare a command of the device's type.
    pub fn command(&self, command: &str) -> CommandBuilder {
        CommandBuilder {
            handle: self.clone(),
            command: command.to_string(),
            req: DeviceCommandRequest::default(),
        }
    }

    /// Wait, driven by the watch stream, until the primary attribute is `state` and nothing is
    /// in flight.
    pub async fn wait_for_state(&self, state: &str, timeout: Duration) -> Result<Device, Error> {
        self.client.wait_for_state(&self.name, state, timeout).await
    }

    pub async fn abort(&self) -> Result<Device, Error> {
        self.client.abort_device(&self.name).await
    }

    pub async fn reset(&self) -> Result<Device, Error> {
        self.client.reset_device(&self.name).await
    }
}

impl CommandBuilder {
    /// Seconds for the phases whose duration comes from the request.
    pub fn duration(mut self, seconds: f64) -> Self {
        self.req.duration = Some(seconds);
        self
    }

    /// Arguments for the type's phases (e.g. mv's `{"config": {"delay": 2}}`).
    pub fn args(mut self, args: serde_json::Value) -> Self {
        self.req.args = Some(args);
        self
    }

    /// With [`CommandBuilder::wait`]: how long the server waits before answering `timeout`.
    pub fn timeout(mut self, seconds: f64) -> Self {
        self.req.timeout = Some(seconds);
        self
    }

    /// Start the command and return at once.
    pub async fn start(self) -> Result<CommandStarted, Error> {
        let h = &self.handle;
        h.client
            .device_command(&h.name, &self.command, &self.req)
            .await
    }

    /// Run the command and return the device once its transition has ended.
    pub async fn wait(self) -> Result<Device, Error> {
        let h = &self.handle;
        h.client
            .device_command_wait(&h.name, &self.command, &self.req)
            .await
    }
}
